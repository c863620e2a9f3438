use super::*;
use crate::config::MapSource;

#[test]
fn no_subcommand_means_serve() {
    assert!(
        Cli::try_parse_from(["tyk-phantom-token"])
            .unwrap()
            .command
            .is_none()
    );
    assert!(matches!(
        Cli::try_parse_from(["tyk-phantom-token", "serve"])
            .unwrap()
            .command,
        Some(Command::Serve)
    ));
}

#[test]
fn bundle_build_has_usable_defaults() {
    let cli = Cli::try_parse_from(["tyk-phantom-token", "bundle", "build"]).unwrap();
    let Some(Command::Bundle(BundleCommand::Build {
        manifest,
        output,
        key,
    })) = cli.command
    else {
        panic!("not bundle build");
    };
    assert_eq!(manifest, PathBuf::from("manifest/manifest.json"));
    assert_eq!(output, PathBuf::from("bundles/phantom-bundle-v1.zip"));
    assert_eq!(key, None);
}

#[test]
fn unknown_subcommands_are_refused() {
    assert!(Cli::try_parse_from(["tyk-phantom-token", "serv"]).is_err());
}

#[test]
fn health_defaults_to_loopback_on_the_configured_port() {
    let env = MapSource::new;
    assert_eq!(default_health_addr(&env(&[])), "127.0.0.1:50051");
    assert_eq!(
        default_health_addr(&env(&[("PORT", "6000")])),
        "127.0.0.1:6000"
    );
    assert_eq!(
        default_health_addr(&env(&[("LISTEN_ADDR", "0.0.0.0:7000")])),
        "127.0.0.1:7000"
    );
    assert_eq!(
        default_health_addr(&env(&[("LISTEN_ADDR", "[::]:7001")])),
        "127.0.0.1:7001"
    );
    assert_eq!(
        default_health_addr(&env(&[("LISTEN_ADDR", "10.1.2.3:7002")])),
        "10.1.2.3:7002"
    );
}
