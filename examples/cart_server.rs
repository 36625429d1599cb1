//! A cart server that keeps no per-client state.
//!
//! ```sh
//! cargo run -p scone-cli -- keygen --out cart.key
//! cargo run --example cart-server -- --key cart.key --listen 127.0.0.1:7000
//! ```
//!
//! Start as many as you like with the same key: any of them can serve any request.
//! Ctrl-C shuts it down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use examples::cart;
use scone::SigningKey;

/// Serve the example cart service.
#[derive(Parser)]
struct Args {
    /// The signing key file (make one with `scone keygen --out FILE`).
    #[arg(long)]
    key: PathBuf,
    /// Where to listen; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// The name this server puts in its replies.
    #[arg(long, default_value = "cart-server")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let key = SigningKey::load(&args.key)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("{addr}");
    tracing::info!(%addr, key_id = %key.key_id(), name = %args.name, "cart server listening");
    cart::serve(listener, key, &args.name, tokio::signal::ctrl_c()).await?;
    tracing::info!("stopped");
    Ok(())
}
