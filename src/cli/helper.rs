//! The mount(8) form of the command line: `strata STORE MOUNTPOINT -o
//! OPTIONS` (the `-o` list is what tells it from a subcommand), as
//! mount.fuse3 runs it for `mount -t fuse.strata` and for an
//! /etc/fstab line of type `fuse.strata`. It is rewritten into `strata mount
//! STORE MOUNTPOINT --flag=value …` before clap sees it, so the subcommand
//! CLI stays the one definition of every option. Pure: no I/O.
//!
//! Each `-o` option is named after a long flag of `strata mount` (dashes may
//! be written as underscores): `vault=FILE`, `passphrase_file=FILE`,
//! `allow_other`, `cache_size=BYTES`, `idle=10m`, … A value is handed to clap
//! glued to its flag (`--vault=VALUE`), so no value can become a flag of its
//! own. The options mount(8) and mount.fuse3 add or pass through are
//! accepted: the fstab-only ones (`auto`, `noauto`, `nofail`, `_netdev`,
//! `user`, `x-*`, …) and the generic ones strata always applies or has no
//! use for (`rw`, `dev`, `suid`: strata always mounts `nodev,nosuid`).
//! Anything else is refused with one line naming it.

use std::ffi::{OsStr, OsString};

/// Options of fstab and mount(8) that are not for the filesystem, and
/// generic options strata accepts without effect. `dev` and `suid` are added
/// by mount.fuse3 unless `nodev`/`nosuid` are given; strata always mounts
/// `nodev,nosuid` (it serves no device nodes, and a setuid program on an
/// encrypted store would be a way in).
const IGNORED: &[&str] = &[
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "defaults",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "atime",
    "relatime",
    "nodiratime",
    "async",
    "default_permissions",
];

/// Long flags of `strata mount` that `-o` may not set: they make no sense
/// in an fstab line.
const NOT_OPTIONS: &[&str] = &["help", "version"];

/// Whether `argv` (with the program name first) is the mount(8) form: a
/// first word that is not a subcommand or an option, and an `-o` list
/// (mount(8) and mount.fuse3 always pass one: at least `rw` or `dev,suid`).
/// A mistyped subcommand (`strata verfy STORE`) is thus a usage error, not
/// a mount.
fn is_helper_form(argv: &[OsString], subcommands: &[String]) -> bool {
    let has_options = argv
        .iter()
        .skip(2)
        .any(|a| a.to_str().is_some_and(|a| a.starts_with("-o")));
    if argv.len() < 4 || !has_options {
        return false;
    }
    match argv.get(1).and_then(|a| a.to_str()) {
        // A non-UTF-8 first word cannot be a subcommand: a store path.
        None => true,
        Some(first) => !first.starts_with('-') && !subcommands.iter().any(|s| s == first),
    }
}

/// How a long flag of `strata mount` takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// A switch (`--allow-other`).
    Switch,
    /// Takes a value (`--vault FILE`).
    Value,
}

/// The long flags of `strata mount` with how each takes its value.
pub fn mount_flags() -> Vec<(String, FlagKind)> {
    use clap::CommandFactory;
    let cmd = super::Cli::command();
    let Some(mount) = cmd.find_subcommand("mount") else {
        return Vec::new();
    };
    mount
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            if NOT_OPTIONS.contains(&long) {
                return None;
            }
            let kind = if a.get_action().takes_values() {
                FlagKind::Value
            } else {
                FlagKind::Switch
            };
            Some((long.to_string(), kind))
        })
        .collect()
}

/// Turns one `-o` list into `strata mount` flags.
pub fn options_to_flags(list: &str, flags: &[(String, FlagKind)]) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for opt in list.split(',') {
        if opt.is_empty() {
            continue;
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        if value.is_none() && IGNORED.contains(&name) || name.starts_with("x-") || name == "comment"
        {
            continue;
        }
        let long = name.replace('_', "-");
        // `ro` is both the generic option and strata's long flag.
        let Some((flag, kind)) = flags.iter().find(|(f, _)| *f == long) else {
            return Err(format!(
                "unknown mount option {name:?} in -o (options are named after the long flags of `strata mount`)"
            ));
        };
        match (kind, value) {
            (FlagKind::Switch, None) => out.push(OsString::from(format!("--{flag}"))),
            (FlagKind::Switch, Some(_)) => {
                return Err(format!("mount option {name} takes no value"));
            }
            (FlagKind::Value, Some(v)) => out.push(OsString::from(format!("--{flag}={v}"))),
            (FlagKind::Value, None) => {
                return Err(format!("mount option {name} needs a value: {name}=VALUE"));
            }
        }
    }
    Ok(out)
}

/// Rewrites the mount(8) form into `strata mount …`; any other command
/// line is returned as it is. Errors are usage errors (one line).
pub fn rewrite(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    use clap::CommandFactory;
    let subcommands: Vec<String> = super::Cli::command()
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .chain(["help".to_string()])
        .collect();
    if !is_helper_form(&argv, &subcommands) {
        return Ok(argv);
    }
    let flags = mount_flags();
    let mut it = argv.into_iter();
    let program = it.next().unwrap_or_else(|| OsString::from("strata"));
    let mut out = vec![program, OsString::from("mount")];
    let mut positionals = 0;
    let mut rest = Vec::new();
    while let Some(arg) = it.next() {
        if arg == OsStr::new("-o") {
            let Some(list) = it.next() else {
                return Err("-o needs a list of options".into());
            };
            let list = list
                .into_string()
                .map_err(|_| "the -o list is not UTF-8".to_string())?;
            rest.extend(options_to_flags(&list, &flags)?);
        } else if let Some(list) = arg.to_str().and_then(|a| a.strip_prefix("-o")) {
            rest.extend(options_to_flags(list, &flags)?);
        } else if arg.to_str().is_some_and(|a| a.starts_with('-')) {
            // Other flags (-f, -v, --idle …) pass to `strata mount` as given.
            rest.push(arg);
        } else {
            positionals += 1;
            if positionals > 2 {
                return Err(format!(
                    "unexpected argument {:?}: the mount form is `strata STORE MOUNTPOINT -o OPTIONS`",
                    arg
                ));
            }
            out.push(arg);
        }
    }
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.into_string().expect("utf-8"))
            .collect()
    }

    #[test]
    fn mount_fuse3_argv_becomes_a_mount_command() {
        // Exactly what mount.fuse3 runs for an fstab line (it adds dev,suid
        // and strips nofail, noauto, _netdev; mount(8) strips x-* options).
        let got = rewrite(os(&[
            "strata",
            "/srv/store",
            "/mnt/s",
            "-o",
            "rw,noatime,vault=/etc/strata/vault,passphrase_file=/etc/strata/pass,allow_other,cache-size=1048576,idle=10m,dev,suid",
        ]))
        .expect("rewrites");
        assert_eq!(
            strs(got),
            [
                "strata",
                "mount",
                "/srv/store",
                "/mnt/s",
                "--noatime",
                "--vault=/etc/strata/vault",
                "--passphrase-file=/etc/strata/pass",
                "--allow-other",
                "--cache-size=1048576",
                "--idle=10m",
            ]
        );
    }

    #[test]
    fn fstab_only_options_pass_through_without_effect() {
        let got = rewrite(os(&[
            "strata",
            "s",
            "m",
            "-o",
            "nofail,noauto,_netdev,x-systemd.automount,x-systemd.idle-timeout=5,comment=x,ro",
        ]))
        .expect("rewrites");
        assert_eq!(strs(got), ["strata", "mount", "s", "m", "--ro"]);
    }

    #[test]
    fn subcommand_command_lines_are_left_alone() {
        for argv in [
            vec!["strata", "mount", "s", "m", "-f"],
            vec!["strata", "init", "s"],
            vec!["strata", "--version"],
            vec!["strata", "help", "mount"],
            vec!["strata", "umount", "m"],
            vec!["strata"],
        ] {
            let got = rewrite(os(&argv)).expect("left alone");
            assert_eq!(strs(got), argv);
        }
    }

    #[test]
    fn a_value_cannot_smuggle_a_flag() {
        let got = rewrite(os(&[
            "strata",
            "s",
            "m",
            "-o",
            "vault=x --passphrase-file=/tmp/p,passphrase_command=/bin/echo hi",
        ]))
        .expect("rewrites");
        assert_eq!(
            strs(got),
            [
                "strata",
                "mount",
                "s",
                "m",
                "--vault=x --passphrase-file=/tmp/p",
                "--passphrase-command=/bin/echo hi",
            ]
        );
    }

    #[test]
    fn unknown_or_malformed_options_are_refused_by_name() {
        for (list, want) in [
            ("fsname=evil", "unknown mount option \"fsname\""),
            ("sync", "unknown mount option \"sync\""),
            ("allow_other=1", "allow_other takes no value"),
            ("vault", "vault needs a value"),
            ("help", "unknown mount option \"help\""),
            ("rw=1", "unknown mount option \"rw\""),
        ] {
            let err = rewrite(os(&["strata", "s", "m", "-o", list])).expect_err(list);
            assert!(err.contains(want), "{list}: {err}");
        }
    }

    #[test]
    fn a_third_positional_is_a_usage_error() {
        let err = rewrite(os(&["strata", "s", "m", "extra", "-o", "rw"])).expect_err("refused");
        assert!(err.contains("unexpected argument"), "{err}");
    }

    #[test]
    fn a_mistyped_subcommand_is_not_taken_for_a_mount() {
        for argv in [
            vec!["strata", "verfy", "/srv/store"],
            vec!["strata", "s", "m"],
        ] {
            let got = rewrite(os(&argv)).expect("left alone for clap to refuse");
            assert_eq!(strs(got), argv);
        }
    }

    #[test]
    fn every_long_flag_of_mount_is_an_option() {
        let flags = mount_flags();
        for f in [
            "vault",
            "passphrase-file",
            "passphrase-command",
            "idle",
            "ro",
            "threads",
        ] {
            assert!(flags.iter().any(|(n, _)| n == f), "{f} missing: {flags:?}");
        }
        assert!(!flags.iter().any(|(n, _)| n == "help"));
    }
}
