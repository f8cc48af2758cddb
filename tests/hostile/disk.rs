//! A full disk, and the free-disk floor, on a small tmpfs the test mounts (root only: CI runs
//! as root; elsewhere run `sudo -E cargo test --test hostile disk`).

use std::path::Path;
use std::time::Duration;

use super::*;

/// A tmpfs of `bytes` mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("cannot run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root: run this test as root (CI does), e.g. \
             `sudo -E cargo test --test hostile disk`"
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// `seconds` of a 16 kHz test signal, written to `dir`.
fn clip(dir: &Path, seconds: usize) -> (PathBuf, Vec<i16>) {
    let samples: Vec<i16> = (0..seconds * 16_000)
        .map(|i| ((i * 7919) % 20_000) as i16 - 10_000)
        .collect();
    let path = dir.join("clip.wav");
    write_wav(&path, 16_000, &samples);
    (path, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_call_leaves_valid_files_and_says_what_was_lost() {
    let mut mounted = None;
    let gateway = ServeProcess::start_prepared(
        "[pipeline]\nprocessors = [\"wav\", \"transcript\", \"dtmf\"]\n\
         [recording]\nmin_free_bytes = 0\n",
        &[],
        |calls| mounted = Some(Tmpfs::mount(calls, 1024 * 1024)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // 60 s of audio is 1.9 MB: it cannot fit in 1 MiB.
    let (clip, sent) = clip(dir.path(), 60);
    let config = common::emulate(gateway.url("/ws?callId=full")).with_wav(&clip);
    let report = mediagate::emulator::run(config).await.unwrap();
    assert_eq!(report.frames_sent as usize, sent.len() / 320);
    let session = wait_ended(&gateway, "full").await;
    let path = gateway.call_dir("full").join("mixed.wav");
    assert_wav_header_consistent(&path);
    let (recorded, _) = read_wav(&path);
    assert!(!recorded.is_empty() && recorded.len() < sent.len());
    assert!(
        recorded == sent[..recorded.len()],
        "the recorded part differs"
    );
    let wav = common::processor(&session["transports"][0], "wav");
    let stopped = wav["report"]["stopped"].as_str().unwrap_or_default();
    assert!(stopped.contains("write failed"), "{wav}");
    let lost = wav["report"]["lost_frames"].as_u64().unwrap();
    assert!(lost > 0, "{wav}");
    // The gateway goes on: /healthz answers, and it still takes calls (recorded without
    // audio now that the disk is full).
    let (status, took) = gateway.healthz().await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1));
    let (_, metrics) = common::process::http_get(gateway.addr, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("mediagate_processor_stopped_total{processor=\"wav\"} 1"),
        "{metrics}"
    );
    drop(gateway);
    drop(mounted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_disk_floor_new_calls_are_refused_and_live_ones_stop() {
    let mut mounted = None;
    // 4 MiB of disk and a floor 16 KiB below it: the call's first write takes the disk under
    // the floor (the recorder checks after each write, at most once a second).
    let gateway = ServeProcess::start_prepared(
        "[pipeline]\nprocessors = [\"wav\"]\n\
         [recording]\nmin_free_bytes = 4177920\non_low_disk = \"refuse\"\n",
        &[],
        |calls| mounted = Some(Tmpfs::mount(calls, 4 * 1024 * 1024)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (clip, sent) = clip(dir.path(), 60);
    let config = common::emulate(gateway.url("/ws?callId=floor")).with_wav(&clip);
    mediagate::emulator::run(config).await.unwrap();
    let session = wait_ended(&gateway, "floor").await;
    let wav = common::processor(&session["transports"][0], "wav");
    assert_eq!(
        wav["report"]["stopped"], "free disk below min_free_bytes",
        "{wav}"
    );
    let path = gateway.call_dir("floor").join("mixed.wav");
    assert_wav_header_consistent(&path);
    let (recorded, _) = read_wav(&path);
    assert!(recorded == sent[..recorded.len()]);
    // Now below the floor: a new call is refused before the upgrade, and leaves no folder.
    tokio::time::sleep(Duration::from_millis(1500)).await; // the next free-space reading
    match tokio_tungstenite::connect_async(gateway.url("/ws?callId=refused")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert!(!folders(&gateway).iter().any(|f| f == "refused"));
    drop(gateway);
    drop(mounted);
}
