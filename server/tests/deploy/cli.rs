//! What sessiond's command line accepts, read from `sessiond::cli::Cli`
//! itself: subcommands, their long flags and their environment twins, and a
//! check of a value through the flag's own parser.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches};
use sessiond::cli::Cli;

/// One `SESSIOND_*` variable: the first subcommand that reads it, its flag.
#[derive(Debug, Clone)]
pub struct EnvArg {
    pub subcommand: String,
    pub long: String,
    pub is_switch: bool,
    pub default: Option<String>,
}

/// The command line's surface.
#[derive(Debug)]
pub struct Surface {
    /// Subcommand name to the long flags it takes (global ones included).
    pub subcommands: BTreeMap<String, BTreeSet<String>>,
    /// Every environment variable an argument reads, to its argument.
    pub env: BTreeMap<String, EnvArg>,
    /// The variables `serve` reads, the globals included.
    pub serve_env: BTreeSet<String>,
}

impl Surface {
    pub fn read() -> Self {
        let mut root = Cli::command();
        root.build();
        let globals: BTreeSet<String> = root
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect();
        let mut subcommands = BTreeMap::new();
        let mut env = BTreeMap::new();
        let mut serve_env = BTreeSet::new();
        for sub in root.get_subcommands() {
            let name = sub.get_name().to_owned();
            let mut flags = globals.clone();
            for arg in sub.get_arguments().chain(root.get_arguments()) {
                let Some(long) = arg.get_long() else { continue };
                flags.insert(long.to_owned());
                let Some(var) = arg.get_env() else { continue };
                let var = var.to_string_lossy().into_owned();
                if name == "serve" {
                    serve_env.insert(var.clone());
                }
                env.entry(var).or_insert_with(|| EnvArg {
                    subcommand: name.clone(),
                    long: long.to_owned(),
                    is_switch: matches!(arg.get_action(), ArgAction::SetTrue),
                    default: arg
                        .get_default_values()
                        .first()
                        .map(|value| value.to_string_lossy().into_owned()),
                });
            }
            subcommands.insert(name, flags);
        }
        assert!(
            subcommands.contains_key("serve") && env.contains_key("SESSIOND_LISTEN"),
            "Cli has no serve subcommand or no SESSIOND_LISTEN: {subcommands:?}"
        );
        Self {
            subcommands,
            env,
            serve_env,
        }
    }

    /// Whether `name` is read by sessiond: a flag's twin, or the log filter.
    pub fn reads(&self, name: &str) -> bool {
        name == "RUST_LOG" || self.env.contains_key(name)
    }

    /// Parses `value` of `name` as sessiond would, through the flag's
    /// value parser (without reading this process's environment).
    pub fn check_value(&self, name: &str, value: &str) -> Result<(), String> {
        if name == "RUST_LOG" {
            return tracing_subscriber::EnvFilter::try_new(value)
                .map(drop)
                .map_err(|err| format!("RUST_LOG={value}: {err}"));
        }
        let arg = self
            .env
            .get(name)
            .ok_or_else(|| format!("{name} is not read by sessiond"))?;
        let env = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        self.parse(&arg.subcommand, &env)
            .map(drop)
            .map_err(|err| format!("{name}={value}: {err}"))
    }

    /// The configuration `sessiond SUBCOMMAND` gets from the variables in
    /// `env` (and only from them), each turned into its flag.
    pub fn parse(&self, subcommand: &str, env: &BTreeMap<String, String>) -> Result<Cli, String> {
        let mut argv = vec!["sessiond".to_owned(), subcommand.to_owned()];
        for (name, value) in env {
            if name == "RUST_LOG" {
                continue;
            }
            let arg = self
                .env
                .get(name)
                .ok_or_else(|| format!("{name} is not read by sessiond"))?;
            if arg.is_switch {
                match value.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => argv.push(format!("--{}", arg.long)),
                    "false" | "no" | "off" | "0" => {}
                    other => return Err(format!("{name}={other}: expected true or false")),
                }
            } else {
                argv.push(format!("--{}={value}", arg.long));
            }
        }
        let command = Cli::command()
            .mut_args(|arg| arg.env(None::<&str>))
            .mut_subcommands(|sub| sub.mut_args(|arg| arg.env(None::<&str>)));
        let matches = command
            .try_get_matches_from(&argv)
            .map_err(|err| err.render().to_string())?;
        Cli::from_arg_matches(&matches).map_err(|err| err.to_string())
    }

    /// A duration setting (`SESSIOND_SHUTDOWN_DELAY`, …) as configured in
    /// `env`, else its default.
    pub fn duration(&self, env: &BTreeMap<String, String>, name: &str) -> Duration {
        let text = env
            .get(name)
            .cloned()
            .or_else(|| self.env.get(name).and_then(|arg| arg.default.clone()))
            .unwrap_or_else(|| panic!("{name} has neither a value nor a default"));
        parse_seconds(&text).unwrap_or_else(|err| panic!("{name}={text}: {err}"))
    }

    /// Checks every `sessiond SUBCOMMAND --flag …` written in `text`.
    pub fn check_invocations(&self, file: &str, text: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (number, line) in text.lines().enumerate() {
            for words in invocations(line) {
                let place = format!("{file}:{}", number + 1);
                let Some(subcommand) = words.first() else {
                    continue;
                };
                let Some(flags) = self.subcommands.get(subcommand) else {
                    problems.push(format!(
                        "{place}: `sessiond {subcommand}`: no such subcommand (known: {:?})",
                        self.subcommands.keys().collect::<Vec<_>>()
                    ));
                    continue;
                };
                for word in &words[1..] {
                    let Some(flag) = word.strip_prefix("--") else {
                        continue;
                    };
                    let flag = flag.split('=').next().unwrap_or(flag);
                    if !flags.contains(flag) {
                        problems.push(format!(
                            "{place}: `sessiond {subcommand}` has no flag --{flag}"
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// `30` (seconds) or a duration with units, as sessiond and systemd take it.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|err| err.to_string())
}

/// The words after each `sessiond` that is run as a command in `line`.
/// A command is a backticked `sessiond …`, the first element of an array
/// (`["sessiond", …]`, or after `"CMD"`), a quoted string starting with it,
/// or a path ending in `bin/sessiond` that starts a command line
/// (`ExecStart=/usr/local/bin/sessiond`). Prose ("the sessiond container"),
/// arguments (`pg_isready -d sessiond`) and other paths are not commands.
pub fn invocations(line: &str) -> Vec<Vec<String>> {
    const NAME: &str = "sessiond";
    let mut found = Vec::new();
    for (start, _) in line.match_indices(NAME) {
        let rest = &line[start + NAME.len()..];
        let ends_word = rest
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || "\"'`,]".contains(c));
        let Some(opener) = command_opener(&line[..start]) else {
            continue;
        };
        if !ends_word {
            continue;
        }
        let end = match opener {
            '[' => rest.find(']'),
            '`' | '"' | '\'' => rest.find(opener),
            _ => ["&&", "||", ";", "|"]
                .iter()
                .filter_map(|stop| rest.find(stop))
                .min(),
        }
        .unwrap_or(rest.len());
        let words = rest[..end]
            .split(|c: char| c.is_whitespace() || "\"'`,[]".contains(c))
            .filter(|word| !word.is_empty() && *word != "\\")
            .map(str::to_owned)
            .collect();
        found.push(words);
    }
    found
}

/// Whether the text `before` a `sessiond` makes it a command, and what
/// closes that command: a backtick or quote, the end of an array (`[`) or
/// of the line (`=`).
fn command_opener(before: &str) -> Option<char> {
    match before.chars().next_back()? {
        '`' => Some('`'),
        '[' => Some('['),
        '"' | '\'' => {
            let outside = before[..before.len() - 1].trim_end();
            if outside.ends_with('[') {
                Some('[')
            } else if let Some(previous) = outside.strip_suffix(',') {
                // An array element: a command only after "CMD".
                let previous = previous.trim_end().trim_end_matches(['"', '\'']);
                previous.ends_with("CMD").then_some('[')
            } else {
                before.chars().next_back()
            }
        }
        '/' => {
            let path_start = before
                .rfind(|c: char| c.is_whitespace() || "=\"'`[".contains(c))
                .map_or(0, |index| index + 1);
            let leading = &before[..path_start];
            let starts_command = leading.trim().is_empty() || leading.ends_with('=');
            (before.ends_with("bin/") && starts_command).then_some('=')
        }
        _ => None,
    }
}

/// Every `SESSIOND_*` name written in `text`.
pub fn env_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "SESSIOND_";
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices(PREFIX) {
        let word_start = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if !word_start {
            continue;
        }
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        names.insert(name.trim_end_matches('_').to_owned());
    }
    names
}

#[test]
fn invocations_are_found_in_their_usual_forms() {
    let found = |line: &str| invocations(line);
    assert_eq!(
        found("ExecStart=/usr/local/bin/sessiond serve --listen 1"),
        [["serve", "--listen", "1"]]
    );
    assert_eq!(
        found(r#"    CMD ["sessiond", "healthcheck"]"#),
        [["healthcheck"]]
    );
    assert_eq!(
        found("command: [sessiond, healthcheck] # x --y"),
        [["healthcheck"]]
    );
    assert_eq!(
        found("run `sessiond healthcheck --tls-ca P`, or --other"),
        [["healthcheck", "--tls-ca", "P"]]
    );
    assert!(found("the sessiond container in /var/lib/sessiond").is_empty());
    assert!(found("image: example.com/sessiond:0.1 `sessiond.v1.X`").is_empty());
    assert!(found("COPY /out/bin/sessiond /usr/local/bin/sessiond").is_empty());
    assert!(found(r#"test: ["CMD", "pg_isready", "-d", "sessiond"]"#).is_empty());
    assert_eq!(
        found(r#"test: ["CMD", "sessiond", "healthcheck"]"#),
        [["healthcheck"]]
    );
    assert_eq!(found("value: 'sessiond migrate' # x"), [["migrate"]]);
    assert_eq!(
        env_names("SESSIOND_A_B=1 $SESSIOND_C, XSESSIOND_D SESSIOND_E_"),
        ["SESSIOND_A_B", "SESSIOND_C", "SESSIOND_E"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}

#[test]
fn values_go_through_the_flags_parsers() {
    let surface = Surface::read();
    surface
        .check_value("SESSIOND_DRAIN_TIMEOUT", "10s")
        .unwrap();
    surface
        .check_value("SESSIOND_INSECURE_ALLOW_UNAUTHENTICATED", "false")
        .unwrap();
    assert!(
        surface
            .check_value("SESSIOND_DRAIN_TIMEOUT", "ten seconds")
            .is_err()
    );
    assert!(surface.check_value("SESSIOND_LISTEN", "localhost").is_err());
    assert!(surface.check_value("SESSIOND_NO_SUCH_THING", "1").is_err());
    assert!(
        surface
            .check_invocations("f", "`sessiond serve --no-such-flag`")
            .len()
            == 1
    );
    assert!(
        surface
            .check_invocations("f", "`sessiond serv`")
            .first()
            .is_some_and(|problem| problem.contains("no such subcommand"))
    );
}
