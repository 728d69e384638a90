#!/usr/bin/env python3
"""Generates a realistic cargo workspace for Kindling's demo, tests and benchmarks.

Members: `core` (generated modules; regex + memchr from Debian's crate sources), `gen` (a build script with
rerun-if-changed and rerun-if-env-changed), `macros` (a proc-macro), `model` (serde derive), `envy` (option_env!,
include_str! of a file outside its package), and the `app` binary using all of them, with unit tests.
Crates come from /usr/share/cargo/registry (Debian's librust-*-dev) through source replacement in the
workspace's .cargo/config.toml, so no network is needed and every checkout sees the same registry path.

Usage: generate.py DIR [--modules N] [--functions F] [--big-members K] [--git] [--vendor VENDOR]
  --modules/--functions scale `core` (the default builds in seconds; 120/60 takes minutes).
  --big-members K adds K-1 more crates like `core` (core2, core3, ...), independent of each other, all used by app:
  a change in one of them rebuilds it and app only, as in a real workspace of several large members.
  --git also makes DIR a git repository with one commit.
  --vendor makes VENDOR a directory source (Debian's crates, linked, plus a tiny crate `relocmark` at 0.1.0 and
  0.1.1, so that tests can change Cargo.lock) and has `envy` depend on relocmark.
"""
import argparse
import hashlib
import json
import pathlib
import subprocess
import textwrap


def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def core_module(index, functions):
    lines = [f"//! Generated module {index}.", "use crate::Scanner;", ""]
    for f in range(functions):
        lines.append(textwrap.dedent(f"""
            #[inline(never)]
            pub fn f{f}(input: &str) -> u64 {{
                let mut total: u64 = {index * 1000 + f};
                for (i, b) in input.bytes().enumerate() {{
                    total = total.wrapping_mul(31).wrapping_add(b as u64 ^ (i as u64 + {f}));
                    if total % {f + 7} == 0 {{ total ^= {index + 1}; }}
                }}
                let words: Vec<&str> = input.split_whitespace().collect();
                total.wrapping_add(words.len() as u64 * {f + 1}).wrapping_add(Scanner::count(input, b'{chr(97 + f % 26)}'))
            }}
            """))
    calls = " ^ ".join(f"f{f}(input)" for f in range(functions)) or "0"
    lines.append(f"pub fn all(input: &str) -> u64 {{ {calls} }}\n")
    return "\n".join(lines)


def make_vendor(vendor):
    """A cargo directory source: Debian's crate sources (linked) and relocmark 0.1.0 / 0.1.1."""
    vendor.mkdir(parents=True, exist_ok=True)
    for crate in pathlib.Path("/usr/share/cargo/registry").iterdir():
        link = vendor / crate.name
        if not link.exists():
            link.symlink_to(crate)
    for version in ("0.1.0", "0.1.1"):
        crate = vendor / f"relocmark-{version}"
        write(crate, "Cargo.toml", f"""
            [package]
            name = "relocmark"
            version = "{version}"
            edition = "2021"
            """)
        write(crate, "src/lib.rs", f'pub const VERSION: &str = "{version}";\n')
        # A directory source checks each crate against this file; the package hash just has to be stable.
        digest = hashlib.sha256(f"relocmark-{version}".encode()).hexdigest()
        (crate / ".cargo-checksum.json").write_text(json.dumps({"files": {}, "package": digest}))


def write_big_lib(root, name, modules, functions, doc=None, more=""):
    """A large crate's lib.rs (its generated modules, a Scanner on memchr, a checksum over all of them) plus
    `more` (Rust source, dedented), and the modules themselves."""
    alls = " ^ ".join(f"m{i}::all(input)" for i in range(modules)) or "0"
    lines = ([doc] if doc else []) + [f"pub mod m{i};" for i in range(modules)] + [
        "",
        "pub struct Scanner;",
        "",
        "impl Scanner {",
        "    pub fn count(haystack: &str, needle: u8) -> u64 {",
        "        memchr::memchr_iter(needle, haystack.as_bytes()).count() as u64",
        "    }",
        "}",
        "",
        f"pub fn checksum(input: &str) -> u64 {{ {alls} }}",
    ]
    path = root / f"crates/{name}/src/lib.rs"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(more))
    for i in range(modules):
        write(root, f"crates/{name}/src/m{i}.rs", core_module(i, functions))


def big_member(root, name, modules, functions):
    """Another large crate shaped like core (its own generated modules), depending on memchr only."""
    write(root, f"crates/{name}/Cargo.toml", f"""
        [package]
        name = "{name}"
        version = "0.1.0"
        edition = "2021"

        [dependencies]
        memchr = "2"
        """)
    write_big_lib(root, name, modules, functions)


def generate(root, modules, functions, vendor=None, big_members=1):
    extra = [f"core{k}" for k in range(2, big_members + 1)]
    root.mkdir(parents=True, exist_ok=True)
    write(root, "Cargo.toml", f"""
        [workspace]
        members = ["crates/core", "crates/gen", "crates/macros", "crates/model", "crates/envy", "crates/app"{"".join(f', "crates/{n}"' for n in extra)}]
        resolver = "2"
        """)
    write(root, ".cargo/config.toml", f"""
        # Crates come from Debian's librust-*-dev sources: no network, and the same path on every machine.
        [source.crates-io]
        replace-with = "debian"

        [source.debian]
        directory = "{vendor or '/usr/share/cargo/registry'}"
        """)
    write(root, ".gitignore", "/target\n")
    write(root, "shared/banner.txt", "banner-v1\n")

    # core: generated code, regex + memchr.
    write(root, "crates/core/Cargo.toml", """
        [package]
        name = "core_lib"
        version = "0.1.0"
        edition = "2021"

        [dependencies]
        regex = "1"
        memchr = "2"
        """)
    write_big_lib(root, "core", modules, functions, doc="//! The big member: its size is what makes a cold build slow.", more="""
        pub fn version_words(input: &str) -> usize {
            regex::Regex::new(r"v[0-9]+").map(|re| re.find_iter(input).count()).unwrap_or(0)
        }

        pub const CORE_TAG: &str = "core-v1";
        """)

    # gen: build script reading a data file, with rerun-if-changed and rerun-if-env-changed.
    write(root, "crates/gen/Cargo.toml", """
        [package]
        name = "gen"
        version = "0.1.0"
        edition = "2021"
        build = "build.rs"
        """)
    write(root, "crates/gen/data/table.txt", "1\n2\n3\n")
    write(root, "crates/gen/build.rs", """
        use std::{env, fs, path::Path};

        fn main() {
            println!("cargo:rerun-if-changed=data/table.txt");
            println!("cargo:rerun-if-env-changed=GEN_FLAVOR");
            let table = fs::read_to_string("data/table.txt").expect("data/table.txt");
            let sum: u64 = table.lines().filter_map(|l| l.trim().parse::<u64>().ok()).sum();
            let flavor = env::var("GEN_FLAVOR").unwrap_or_else(|_| "plain".into());
            let out = env::var("OUT_DIR").unwrap();
            fs::write(
                Path::new(&out).join("table.rs"),
                format!("pub const TABLE_SUM: u64 = {sum};\\npub const FLAVOR: &str = {flavor:?};\\n"),
            )
            .unwrap();
        }
        """)
    write(root, "crates/gen/src/lib.rs", """
        include!(concat!(env!("OUT_DIR"), "/table.rs"));
        """)

    # macros: a proc-macro with no dependencies.
    write(root, "crates/macros/Cargo.toml", """
        [package]
        name = "macros"
        version = "0.1.0"
        edition = "2021"

        [lib]
        proc-macro = true
        """)
    write(root, "crates/macros/src/lib.rs", """
        use proc_macro::TokenStream;

        /// Defines `fn answer() -> u32`.
        #[proc_macro]
        pub fn make_answer(_input: TokenStream) -> TokenStream {
            "pub fn answer() -> u32 { 42 }".parse().unwrap()
        }
        """)

    # model: serde derive.
    write(root, "crates/model/Cargo.toml", """
        [package]
        name = "model"
        version = "0.1.0"
        edition = "2021"

        [dependencies]
        serde = { version = "1", features = ["derive"] }
        """)
    write(root, "crates/model/src/lib.rs", """
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub struct Report {
            pub name: String,
            pub value: u64,
        }

        pub fn report(name: &str, value: u64) -> Report {
            Report { name: name.to_string(), value }
        }
        """)

    # envy: env vars and a file outside its package.
    write(root, "crates/envy/Cargo.toml", """
        [package]
        name = "envy"
        version = "0.1.0"
        edition = "2021"
        """ + ('\n[dependencies]\nrelocmark = "0.1"\n' if vendor else ""))
    write(root, "crates/envy/src/lib.rs", """
        pub const MESSAGE: Option<&str> = option_env!("ENVY_MSG");
        pub const PACKAGE: &str = env!("CARGO_PKG_NAME");
        pub const BANNER: &str = include_str!("../../../shared/banner.txt");
        """ + ('pub const RELOCMARK: &str = relocmark::VERSION;\n' if vendor else 'pub const RELOCMARK: &str = "none";\n'))

    # app: the binary, with tests.
    write(root, "crates/app/Cargo.toml", """
        [package]
        name = "app"
        version = "0.1.0"
        edition = "2021"

        [dependencies]
        core_lib = { path = "../core" }
        gen = { path = "../gen" }
        macros = { path = "../macros" }
        model = { path = "../model" }
        envy = { path = "../envy" }
        """ + "".join(f'{n} = {{ path = "../{n}" }}\n' for n in extra))
    for name in extra:
        big_member(root, name, modules, functions)
    extra_sum = "".join(f' ^ {n}::checksum("kindling")' for n in extra)
    write(root, "crates/app/src/main.rs", """
        macros::make_answer!();

        fn summary() -> String {
            let report = model::report("app", core_lib::checksum("kindling warm start v1 v22")__EXTRA__);
            format!(
                "core={} sum={} flavor={} answer={} msg={} banner={} words={} relocmark={} report={}:{}",
                core_lib::CORE_TAG,
                gen::TABLE_SUM,
                gen::FLAVOR,
                answer(),
                envy::MESSAGE.unwrap_or("none"),
                envy::BANNER.trim(),
                core_lib::version_words("v1 v2 x"),
                envy::RELOCMARK,
                report.name,
                report.value
            )
        }

        fn main() {
            println!("{}", summary());
        }

        #[cfg(test)]
        mod tests {
            #[test]
            fn answer_is_42() {
                assert_eq!(super::answer(), 42);
            }

            #[test]
            fn summary_mentions_core() {
                assert!(super::summary().contains("core="));
            }
        }
        """.replace("__EXTRA__", extra_sum))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--modules", type=int, default=8)
    parser.add_argument("--functions", type=int, default=12)
    parser.add_argument("--git", action="store_true")
    parser.add_argument("--vendor")
    parser.add_argument("--big-members", type=int, default=1)
    args = parser.parse_args()
    root = pathlib.Path(args.dir)
    vendor = pathlib.Path(args.vendor).resolve() if args.vendor else None
    if vendor:
        make_vendor(vendor)
    generate(root, args.modules, args.functions, vendor, args.big_members)
    subprocess.run(["cargo", "generate-lockfile", "--offline", "--quiet"], cwd=root, check=True)
    if args.git:
        run = lambda *cmd: subprocess.run(cmd, cwd=root, check=True, capture_output=True)
        run("git", "init", "-q", "-b", "main")
        run("git", "add", "-A")
        run("git", "-c", "user.name=bors", "-c", "user.email=bors@example.invalid", "commit", "-qm", "initial")
    print(root)


if __name__ == "__main__":
    main()
