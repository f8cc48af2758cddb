//! A gateway with mediagate's processors plus `pin_check`, run from your own `main`:
//! `cargo run -p pin-check --example serve -- samples/custom-processor/mediagate.toml` (the
//! file sets `processors = ["pin_check"]` and `[pipeline.settings.pin_check] pin = "1234"`).

use mediagate::server::{CliOverrides, Config, Server, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::args().nth(1).map(std::path::PathBuf::from);
    let config = Config::load_over(
        mediagate::default_config(),
        file.as_deref(),
        &CliOverrides::default(),
    )?;
    let mut registry = mediagate::registry();
    pin_check::register(&mut registry);
    let server = Server::bind(config, registry).await?;
    println!("listening on {}", server.local_addr());
    server.run_until(shutdown_signal()).await?;
    Ok(())
}
