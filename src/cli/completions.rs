//! `completions` and `man`: the command line described for shells and for `man`, generated
//! from the same clap definition as `--help`, so they never drift from it.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::error::exit;

/// The completion script for `shell`.
pub(crate) fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    if shell == Shell::Bash {
        out = fix_bash_labels(&out);
    }
    out
}

/// clap_complete 4.6 spells the case labels of a hyphenated binary's subcommands
/// (`ecr__subcmd__refresh__subcmd__sync`) unlike the state it computes for them
/// (`ecr__refresh__subcmd__sync`), so nothing after a subcommand completed (clap-rs/clap#6421,
/// open). Spell the labels the way the state is computed.
fn fix_bash_labels(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("ecr__subcmd__refresh__subcmd__", "ecr__refresh__subcmd__")
        .into_bytes()
}

/// The main man page, or the one of a subcommand (`ecr-refresh-sync(1)`), as roff.
pub(crate) fn man(subcommand: Option<&str>) -> std::io::Result<Vec<u8>> {
    // Built first, so subcommands carry their full names (ecr-refresh-sync).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let cmd = match subcommand {
        None => cmd,
        Some(name) => cmd.find_subcommand(name).cloned().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no subcommand {name}"),
            )
        })?,
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(concat!("ecr-refresh ", env!("CARGO_PKG_VERSION")))
        .render(&mut out)?;
    Ok(out)
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not worth an error message.
pub(crate) fn print(text: std::io::Result<Vec<u8>>) -> u8 {
    let result = text.and_then(|t| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&t).and_then(|()| stdout.flush())
    });
    match result {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            exit::NAMESPACE_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let text = String::from_utf8(completions(shell)).unwrap();
            for word in [
                "ecr-refresh",
                "sync",
                "status",
                "prune",
                "oidc",
                "--namespace",
            ] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }

    #[test]
    fn bash_case_labels_match_the_computed_state() {
        let text = String::from_utf8(completions(Shell::Bash)).unwrap();
        assert!(text.contains("cmd=\"ecr__refresh__subcmd__sync\""));
        assert!(text.contains("\n        ecr__refresh__subcmd__sync)\n"));
        assert!(!text.contains("ecr__subcmd__refresh"));
    }

    #[test]
    fn man_pages_have_their_names_and_the_exit_codes() {
        let page = String::from_utf8(man(None).unwrap()).unwrap();
        assert!(page.contains(".TH ecr-refresh 1"), "{page}");
        assert!(page.contains("ecr\\-refresh\\-sync(1)"), "{page}");
        assert!(page.contains("Exit codes"));
        for (cmd, flag) in [
            ("sync", "refresh\\-before"),
            ("status", "min\\-remaining"),
            ("prune", "uninstall"),
        ] {
            let page = String::from_utf8(man(Some(cmd)).unwrap()).unwrap();
            assert!(page.contains(&format!(".TH ecr-refresh-{cmd} 1")), "{page}");
            assert!(page.contains(flag), "{cmd}: {flag}");
        }
    }
}
