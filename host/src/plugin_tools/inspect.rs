//! `herald plugin inspect`: what a `.wasm` is — the Herald world and WIT
//! version it implements (read from the component's type), what it says
//! about itself in `describe` (name, version, address kind, settings with the
//! secret ones marked, callbacks), and the interfaces it imports.

use super::sandbox::{self, MeteredChannel};
use crate::clock::SharedClock;
use crate::plugin::bindings::types::{AddressKind, PluginInfo};
use crate::plugin::http_policy::AllowList;
use crate::plugin::targeting::DEFAULT_FUEL;
use crate::plugin::{Contract, KvBackend, Limits, PluginKind, PluginServices, Runtime};
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `herald plugin inspect` arguments.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The plugin (a wasm32-wasip2 component).
    pub plugin: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One setting the plugin understands.
#[derive(Debug, Clone, Serialize)]
pub struct SettingReport {
    /// Key under `[channels.NAME.settings]`.
    pub key: String,
    /// What it is.
    pub description: String,
    /// Never printed or logged by the host.
    pub secret: bool,
    /// The host refuses to start without it.
    pub required: bool,
}

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The file.
    pub plugin: String,
    /// `channel-plugin` or `targeting-plugin`.
    pub world: &'static str,
    /// The contract version it targets, e.g. `herald:plugin@0.1.0`.
    pub package: String,
    /// Whether that is the current contract (otherwise the host serves it
    /// through the adapter of that older version).
    pub current_contract: bool,
    /// `describe().name`.
    pub name: String,
    /// `describe().version`.
    pub version: String,
    /// The address the channel needs: email, phone, wechat, push or none.
    pub address: &'static str,
    /// Whether it parses provider callbacks (`POST /hooks/{channel}`).
    pub accepts_callbacks: bool,
    /// Its settings.
    pub settings: Vec<SettingReport>,
    /// Interfaces it imports.
    pub imports: Vec<String>,
    /// Interfaces it exports.
    pub exports: Vec<String>,
}

fn address_name(kind: AddressKind) -> &'static str {
    match kind {
        AddressKind::Email => "email",
        AddressKind::Phone => "phone",
        AddressKind::Wechat => "wechat",
        AddressKind::Push => "push",
        AddressKind::None => "none",
    }
}

/// Load the plugin and ask it about itself.
pub async fn inspect(
    path: &std::path::Path,
    cache_dir: PathBuf,
    clock: SharedClock,
) -> Result<Inspection> {
    let runtime = Arc::new(Runtime::with_fuel(
        cache_dir,
        crate::plugin::DEFAULT_MEMORY,
    )?);
    let probe = sandbox::probe(&runtime, path)?;
    let services = PluginServices {
        kv: KvBackend::Memory(Default::default()),
        clock,
    };
    let info: PluginInfo = match probe.kind {
        PluginKind::Channel => {
            let channel = MeteredChannel::new(
                runtime.clone(),
                &probe,
                path,
                (
                    crate::plugin::Limits::default(),
                    super::harness::DEFAULT_SEND_FUEL,
                ),
                services,
                AllowList::default(),
            )?;
            channel
                .describe()
                .await
                .map_err(|e| anyhow::anyhow!("plugin {}: {e:#}", path.display()))?
        }
        PluginKind::Targeting => {
            runtime
                .load_targeting(path, "inspect", Limits::default(), DEFAULT_FUEL, services)
                .await?
                .info
        }
    };
    Ok(Inspection {
        plugin: path.display().to_string(),
        world: sandbox::world_name(probe.kind),
        package: probe.contract.to_string(),
        current_contract: probe.contract == Contract::CURRENT,
        name: info.name,
        version: info.version,
        address: address_name(info.address),
        accepts_callbacks: info.accepts_callbacks,
        settings: info
            .settings
            .into_iter()
            .map(|s| SettingReport {
                key: s.key,
                description: s.description,
                secret: s.secret,
                required: s.required,
            })
            .collect(),
        imports: probe.imports,
        exports: probe.exports,
    })
}

/// The inspection as text.
pub fn render(i: &Inspection) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(format!("{k:<10}{v}").trim_end());
        out.push('\n');
    };
    line("plugin", i.plugin.clone());
    line("world", format!("{} ({})", i.world, i.package));
    line(
        "contract",
        if i.current_contract {
            format!("{}, the current contract", i.package)
        } else {
            format!(
                "{}, an earlier contract: this Herald still serves it (adapted in the host); rebuild against {} for what it added",
                i.package,
                Contract::CURRENT
            )
        },
    );
    line("name", format!("{} {}", i.name, i.version));
    line("address", i.address.to_string());
    line(
        "callbacks",
        if i.accepts_callbacks {
            "yes: the host serves POST /hooks/{channel} for it".to_string()
        } else {
            "no".to_string()
        },
    );
    line(
        "settings",
        if i.settings.is_empty() {
            "none".into()
        } else {
            String::new()
        },
    );
    let width = i.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in &i.settings {
        let mut flags = vec![if s.required { "required" } else { "optional" }];
        if s.secret {
            flags.push("SECRET");
        }
        out.push_str(&format!(
            "  {:<width$}  {:<17}  {}\n",
            s.key,
            flags.join(", "),
            s.description
        ));
    }
    out.push_str("imports\n");
    for name in &i.imports {
        out.push_str(&format!("  {name}\n"));
    }
    out.push_str("exports\n");
    for name in &i.exports {
        out.push_str(&format!("  {name}\n"));
    }
    out
}

/// Run `herald plugin inspect`.
pub async fn run(args: InspectArgs, cache_dir: PathBuf, clock: SharedClock) -> Result<ExitCode> {
    let inspection = inspect(&args.plugin, cache_dir, clock).await?;
    if args.json {
        println!("{}", serde_json::to_string(&inspection)?);
    } else {
        print!("{}", render(&inspection));
    }
    Ok(ExitCode::SUCCESS)
}
