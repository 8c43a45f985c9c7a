//! Own test binary: it sends SIGTERM to its own process, which must not disturb other tests.

#[test]
fn sigterm_sets_the_flag_and_does_not_kill() {
    let flag = radit_train::signals::install().expect("install handlers");
    let again = radit_train::signals::install().expect("second install is the same flag");
    let _saving = flag.save_on_signal();
    assert!(!flag.requested());
    assert_eq!(flag.signal_name(), None);

    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    // raise() runs the handler synchronously on this thread before it returns.
    assert!(flag.requested());
    assert!(again.requested());
    assert_eq!(flag.signal_name(), Some("SIGTERM"));

    flag.clear();
    assert!(!flag.requested());
    signal_hook::low_level::raise(signal_hook::consts::SIGINT).expect("raise");
    assert_eq!(flag.signal_name(), Some("SIGINT"));
    flag.clear();
    // SLURM's warning before the time limit (`sbatch --signal=B:USR1@120`) is a stop too.
    signal_hook::low_level::raise(signal_hook::consts::SIGUSR1).expect("raise");
    assert!(flag.requested());
    assert_eq!(flag.signal_name(), Some("SIGUSR1"));
    // A second signal now would exit the process (that is the point); stop here.
    flag.clear();
}

/// Runs in a child process (see below): the second SIGTERM must end the process.
#[test]
fn child_second_signal_exits() {
    if std::env::var_os("RADIT_SIGNAL_CHILD").is_none() {
        return;
    }
    let flag = radit_train::signals::install().expect("install handlers");
    let _saving = flag.save_on_signal();
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    assert!(flag.requested());
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    unreachable!("the second SIGTERM should have exited the process");
}

/// Runs in a child process: outside a training loop the first SIGTERM ends the process.
#[test]
fn child_signal_outside_a_loop_exits() {
    if std::env::var_os("RADIT_SIGNAL_CHILD_IDLE").is_none() {
        return;
    }
    let flag = radit_train::signals::install().expect("install handlers");
    {
        // Inside a loop the signal only sets the flag...
        let _saving = flag.save_on_signal();
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
        assert!(flag.requested());
        flag.clear();
    }
    // ...and once the loop has ended, it exits at once with the resumable status.
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    unreachable!("a SIGTERM outside a training loop should have exited the process");
}

#[test]
fn signal_outside_a_loop_exits_at_once_with_75() {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_signal_outside_a_loop_exits",
            "--test-threads=1",
        ])
        .env("RADIT_SIGNAL_CHILD_IDLE", "1")
        .output()
        .expect("spawn child");
    assert_eq!(
        out.status.code(),
        Some(radit_train::signals::EXIT_RESUMABLE),
        "child output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn second_signal_exits_with_143() {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_second_signal_exits", "--test-threads=1"])
        .env("RADIT_SIGNAL_CHILD", "1")
        .output()
        .expect("spawn child");
    assert_eq!(
        out.status.code(),
        Some(143),
        "child output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
