//! Backend selection through the public API: the same runtime body on io_uring and on epoll
//! (each in a child process, since the backend is chosen once per process), and a clear error
//! for a bad `SPINDLE_DRIVER`. The driver's own tests (ops, orphaned ops, the cancellation storm
//! with its fd count) live beside it in `src/driver/uring/tests.rs`.

use std::process::Command;
use std::time::Duration;

fn child(driver: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_body", "--exact", "--ignored", "--test-threads=1", "--nocapture"])
        .env("SPINDLE_DRIVER", driver)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("1 passed"), text)
}

fn uring_usable() -> bool {
    // Auto-detection picks io_uring exactly when it is usable.
    let (ok, text) = child("auto");
    assert!(ok, "{text}");
    text.contains("driver=io_uring")
}

#[test]
fn same_body_on_both_backends() {
    let (ok, text) = child("epoll");
    assert!(ok && text.contains("driver=epoll"), "{text}");
    if uring_usable() {
        let (ok, text) = child("uring");
        assert!(ok && text.contains("driver=io_uring"), "{text}");
    } else {
        eprintln!("io_uring unusable here: auto-detection fell back to epoll");
    }
}

#[test]
fn bad_driver_value_is_a_clear_error() {
    let (ok, text) = child("kqueue");
    assert!(ok, "{text}");
    assert!(text.contains("build error: ") && text.contains("SPINDLE_DRIVER"), "{text}");
}

/// Run by the tests above in a child process with `SPINDLE_DRIVER` set.
#[test]
#[ignore = "run in a child process by the tests above"]
fn child_body() {
    let rt = match spindle::runtime::Builder::new_multi_thread().worker_threads(2).build() {
        Ok(rt) => rt,
        Err(e) => {
            println!("build error: {e}");
            return;
        }
    };
    let driver = rt.handle().io_driver();
    // Tasks, cross-thread wakes and timers all go through the reactor the workers park in.
    let sum = rt.block_on(async {
        let hs: Vec<_> = (0..100u64)
            .map(|i| {
                spindle::spawn(async move {
                    spindle::time::sleep(Duration::from_millis(i % 5)).await;
                    i
                })
            })
            .collect();
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    });
    assert_eq!(sum, 4950);
    let ct = spindle::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(ct.handle().io_driver(), driver);
    ct.block_on(spindle::time::sleep(Duration::from_millis(2)));
    // A wake from a plain thread reaches a parked worker.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let h = rt.spawn(async move {
        spindle::time::sleep(Duration::from_millis(1)).await;
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    rt.block_on(h).unwrap();
    println!("driver={driver}");
}
