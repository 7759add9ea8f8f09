//! The compiled-module cache on disk.

use std::time::Instant;

use sidekill::{embedded, Config, Runtime, Sha256};

#[test]
fn a_second_runtime_reads_the_compiled_module_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        cache_dir: Some(dir.path().join("cache")),
        ..Config::default()
    };
    let started = Instant::now();
    let first = Runtime::new(config.clone()).expect("runtime");
    first.load(embedded::BYTES).expect("loads");
    let cold = started.elapsed();

    let files: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .expect("the cache directory exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(&embedded::sha256().to_string()),
        "{files:?}"
    );
    assert!(files[0].ends_with(".cwasm"), "{files:?}");

    let started = Instant::now();
    let second = Runtime::new(config).expect("runtime");
    let policy = second.load(embedded::BYTES).expect("loads from the cache");
    let warm = started.elapsed();
    eprintln!("cold load {cold:?}, from the disk cache {warm:?}");
    assert!(warm < cold, "cold {cold:?}, warm {warm:?}");
    assert_eq!(*policy.sha256(), Sha256::of(embedded::BYTES));
}

#[test]
fn a_corrupt_cache_file_is_ignored_and_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    Runtime::new(config.clone())
        .expect("runtime")
        .load(embedded::BYTES)
        .expect("loads");
    let entry = std::fs::read_dir(dir.path())
        .expect("dir")
        .next()
        .expect("one entry")
        .expect("entry")
        .path();
    std::fs::write(&entry, b"not a compiled module").expect("corrupt it");
    let policy = Runtime::new(config)
        .expect("runtime")
        .load(embedded::BYTES)
        .expect("recompiles");
    assert!(policy.plan(crate::common::ISTIO_POD).is_ok());
    assert!(std::fs::metadata(&entry).expect("rewritten").len() > 1000);
}
