//! `spindle::signal` on every flavour: deliveries reach every listener, a listener sees only
//! deliveries made after it was created, `ctrl_c` catches `SIGINT`, and bad requests are errors.
//! Signals are process-wide, so the tests here take turns.

mod common;

use std::time::Duration;

use common::{each_flavor, serial};
use spindle::signal::{signal, SignalKind};
use spindle::time::timeout;

fn send(sig: libc::c_int) {
    // SAFETY: `kill` on our own pid only sends a signal; its handler is installed by the caller.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

#[test]
fn every_listener_sees_each_later_delivery() {
    let _s = serial();
    each_flavor(|rt| {
        rt.block_on(async {
            let mut a = signal(SignalKind::user_defined1()).unwrap();
            let mut b = signal(SignalKind::user_defined1()).unwrap();
            for _ in 0..3 {
                send(libc::SIGUSR1);
                assert_eq!(timeout(Duration::from_secs(10), a.recv()).await.unwrap(), Some(()));
                assert_eq!(timeout(Duration::from_secs(10), b.recv()).await.unwrap(), Some(()));
            }
            // A listener created now has seen nothing; nor has `a` since its last recv.
            let mut late = signal(SignalKind::user_defined1()).unwrap();
            assert!(timeout(Duration::from_millis(30), late.recv()).await.is_err());
            assert!(timeout(Duration::from_millis(30), a.recv()).await.is_err());
            // A task waiting in another task is woken by the delivery.
            let waiter = spindle::spawn(async move { late.recv().await });
            spindle::time::sleep(Duration::from_millis(5)).await;
            send(libc::SIGUSR1);
            assert_eq!(timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap(), Some(()));
        });
    });
}

#[test]
fn ctrl_c_completes_on_sigint() {
    let _s = serial();
    each_flavor(|rt| {
        rt.block_on(async {
            let mut c = std::pin::pin!(spindle::signal::ctrl_c());
            // The first poll installs the handler (before it, SIGINT would end the process).
            assert!(futures::poll!(c.as_mut()).is_pending());
            send(libc::SIGINT);
            timeout(Duration::from_secs(10), c).await.expect("ctrl_c never completed").unwrap();
        });
    });
}

#[test]
fn uncatchable_and_unknown_signals_are_errors() {
    for (signum, says) in [
        (libc::SIGKILL, "cannot be replaced"),
        (libc::SIGSEGV, "cannot be replaced"),
        (0, "no such signal"),
        (200, "no such signal"),
    ] {
        let err = signal(SignalKind::from_raw(signum)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains(&format!("signal {signum}")) && msg.contains(says), "{msg}");
    }
}
