//! Prints the `FileSymbols` of one file as pretty JSON: `symtab_dump FILE`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: symtab_dump FILE");
        std::process::exit(2);
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let symbols = py_symbols::extract(&bytes);
            match serde_json::to_string_pretty(&symbols) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot serialize: {e}"),
            }
        }
        Err(e) => {
            eprintln!("cannot read `{path}`: {e}");
            std::process::exit(1);
        }
    }
}
