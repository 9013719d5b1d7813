//! `behavry bundle`: OPA bundles for teams. `verify` reads one as a wrapper would and runs its
//! tests; `build` writes one (as `opa build -b` and `opa sign` do) for teams without OPA;
//! `status` shows what the configured bundles stand at; `fetch` downloads them now.

use clap::Subcommand;

mod build;
mod fetch;
mod status;
mod verify;

/// Check and build OPA policy bundles (a team's signed policy set)
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry bundle build policies/ -o bundle.tar.gz --revision 2026-05-01\n  \
    behavry bundle build policies/ -o bundle.tar.gz \\\n      \
    --signing-key org.pem --keyid org-2026 --scope behavry\n  \
    behavry bundle verify bundle.tar.gz --bundle org\n  \
    behavry bundle verify bundle.tar.gz \\\n      \
    --key org.pub.pem --algorithm ES256 --keyid org-2026 --scope behavry\n  \
    behavry bundle status\n  \
    behavry bundle fetch org")]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    Verify(verify::VerifyArgs),
    Build(build::BuildArgs),
    Status(status::StatusArgs),
    Fetch(fetch::FetchArgs),
}

pub fn run(args: BundleArgs) -> anyhow::Result<i32> {
    match args.command {
        BundleCommand::Verify(args) => verify::run(args),
        BundleCommand::Build(args) => build::run(args),
        BundleCommand::Status(args) => status::run(args),
        BundleCommand::Fetch(args) => fetch::run(args),
    }
}
