//! `behavry bundle`: OPA bundles for teams. `verify` reads one as a wrapper would and runs its
//! tests; `build` writes one (as `opa build -b` and `opa sign` do) for teams without OPA.

use clap::Subcommand;

mod build;
mod verify;

/// Check and build OPA policy bundles (a team's signed policy set)
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry bundle build policies/ -o bundle.tar.gz --revision 2026-05-01\n  \
    behavry bundle build policies/ -o bundle.tar.gz --signing-key org.pem --keyid org-2026 --scope behavry\n  \
    behavry bundle verify bundle.tar.gz --bundle org\n  \
    behavry bundle verify bundle.tar.gz --key org.pub.pem --algorithm ES256 --keyid org-2026 --scope behavry")]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    Verify(verify::VerifyArgs),
    Build(build::BuildArgs),
}

pub fn run(args: BundleArgs) -> anyhow::Result<i32> {
    match args.command {
        BundleCommand::Verify(args) => verify::run(args),
        BundleCommand::Build(args) => build::run(args),
    }
}
