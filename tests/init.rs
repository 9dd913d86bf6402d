//! `tiers init` writes a tiers.toml that fits the project and that the engine accepts.

mod support;

use support::project;

#[test]
fn init_configures_venv_symtab_and_codeql_for_a_python_project() {
    let p = project()
        .file("requirements.txt", "\n")
        .file("pkg/__init__.py", "")
        .file("pkg/a.py", "x = 1\n")
        .build();
    let run = p.tiers(&["init"]).expect_code(0);
    assert!(
        run.stdout.contains("with tiers: venv, symtab, codeql"),
        "{}",
        run.stdout
    );
    let toml = p.read("tiers.toml");
    for table in ["[tiers.venv]", "[tiers.symtab]", "[tiers.codeql]"] {
        assert!(toml.contains(table), "{table} missing from:\n{toml}");
    }
    // The written file is a valid configuration: status reads it and builds nothing.
    let status = p.status(&[]).expect_code(0);
    let names: Vec<String> = status.json()["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["codeql", "symtab", "venv"]);
    assert_eq!(status.status("venv"), "missing");
}

#[test]
fn init_without_manifests_configures_no_venv() {
    let p = project().file("a.py", "x = 1\n").build();
    p.tiers(&["init"]).expect_code(0);
    let toml = p.read("tiers.toml");
    assert!(!toml.contains("[tiers.venv]"), "{toml}");
    assert!(toml.contains("[tiers.symtab]"), "{toml}");
}

#[test]
fn init_never_overwrites_a_configuration() {
    let p = project()
        .file("tiers.toml", "# mine\n")
        .file("a.py", "")
        .build();
    let run = p.tiers(&["init"]).expect_code(2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(p.read("tiers.toml"), "# mine\n");
}
