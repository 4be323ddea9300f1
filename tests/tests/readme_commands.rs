//! Issue 12 point 26: the README's test command does all the set-up itself, and CI runs exactly
//! it. (The set-up itself is exercised by every fresh-clone CI run; this pins the contract.)

use system_tests::workspace_root;

/// The command lines of the README's "The two commands" block.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("a 'The two commands' section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_test_command_installs_what_the_tests_drive_and_ci_runs_it() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "run and test: {commands:?}");
    let test = &commands[1];
    let script = workspace_root().join(test);
    let text = std::fs::read_to_string(&script)
        .unwrap_or_else(|e| panic!("the test command {test:?} is a script in the repository: {e}"));
    for (needle, what) in [
        ("apt-get install", "installs missing Debian packages"),
        ("chromium", "the browser"),
        ("tests/python/requirements.txt", "the Python peers"),
        ("npm ci", "the npm packages"),
        (
            "cargo test --workspace --no-fail-fast",
            "runs every suite, also after a failure",
        ),
    ] {
        assert!(text.contains(needle), "{test} {what} ({needle:?})");
    }
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == test.as_str()),
        ".ci/run calls the README's test command {test:?}"
    );
    // The venv and stamp are the ones the tests look for, so the tests find the peers installed.
    let support = std::fs::read_to_string(workspace_root().join("tests/support/lib.rs")).unwrap();
    assert!(support.contains("\"py-peers\"") && text.contains("target/py-peers"));
    assert!(support.contains("\".requirements\"") && text.contains(".requirements"));
}
