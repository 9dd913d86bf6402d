//! The library API: an embedder registers a kind of its own and builds without the
//! driver (issue 2). The example under `examples/` is compiled into this test and run.

#[path = "../examples/custom_kind.rs"]
mod custom_kind;

mod support;

use tiers::Status;

#[test]
fn example_kind_builds_then_is_fresh_then_rebuilds_on_edit() {
    let p = support::project()
        .file("a.py", "import os\nprint(os.name)\n")
        .file("pkg/b.py", "x = 1\n")
        .file("notes.txt", "not an input at all\n")
        .build();
    let cache = p.path("cache");

    let first = custom_kind::run(p.root(), &cache).unwrap();
    let words = first.tier("words").unwrap();
    assert_eq!(words.status, Status::Built);
    let path = words.path.clone().unwrap();
    assert!(
        path.starts_with(&cache),
        "{path:?} is not under the cache dir"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "6\n");

    let second = custom_kind::run(p.root(), &cache).unwrap();
    assert_eq!(second.tier("words").unwrap().status, Status::Fresh);
    assert_eq!(second.tier("words").unwrap().key, words.key);

    p.write("notes.txt", "still not an input\n");
    assert_eq!(
        custom_kind::run(p.root(), &cache)
            .unwrap()
            .tier("words")
            .unwrap()
            .status,
        Status::Fresh
    );

    p.write("pkg/b.py", "x = 1\ny = 2\n");
    let third = custom_kind::run(p.root(), &cache).unwrap();
    let t = third.tier("words").unwrap();
    assert_eq!(t.status, Status::Rebuilt);
    assert_eq!(t.reasons[0].message, "the input `pkg/b.py` changed");
    assert_eq!(
        std::fs::read_to_string(t.path.clone().unwrap()).unwrap(),
        "9\n"
    );
}

#[test]
fn report_serializes_to_the_documented_json_shape() {
    let p = support::project().file("a.py", "x = 1\n").build();
    let report = custom_kind::run(p.root(), &p.path("cache")).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let tier = &json["tiers"][0];
    for field in [
        "name", "kind", "key", "path", "status", "reasons", "seconds",
    ] {
        assert!(tier.get(field).is_some(), "missing `{field}` in {tier}");
    }
    assert_eq!(tier["status"], "built");
    assert_eq!(
        json["project"],
        serde_json::json!(p.root().canonicalize().unwrap())
    );
}
