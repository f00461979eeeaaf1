//! The man pages in man/ are generated from the clap definitions; this test
//! fails when they are stale. `STRATA_UPDATE_MAN=1 cargo test --test
//! man_pages` rewrites them.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn man_pages_match_the_command_definitions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let want: BTreeMap<String, Vec<u8>> = strata::cli::man_pages().into_iter().collect();
    assert!(want.contains_key("strata.1") && want.contains_key("strata-mount.1"));
    if std::env::var_os("STRATA_UPDATE_MAN").is_some() {
        std::fs::create_dir_all(&dir).expect("create man/");
        for e in std::fs::read_dir(&dir).expect("list man/") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "1") {
                std::fs::remove_file(p).expect("remove stale page");
            }
        }
        for (name, page) in &want {
            std::fs::write(dir.join(name), page).expect("write page");
        }
        return;
    }
    let mut have = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("man/ exists") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "1") {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            have.insert(name, std::fs::read(&p).expect("read page"));
        }
    }
    let stale: Vec<&String> = want
        .keys()
        .filter(|k| have.get(*k) != want.get(*k))
        .chain(have.keys().filter(|k| !want.contains_key(*k)))
        .collect();
    assert!(
        stale.is_empty(),
        "man pages are stale ({stale:?}): run `STRATA_UPDATE_MAN=1 cargo test --test man_pages`"
    );
}
