//! `radit-fuzz PARSER [--minutes M | --cases N] [--seed S] [--case I --save FILE]`: runs
//! seeded mutations of one parser's seed inputs (or of every parser, `all`) and prints one
//! summary line per target; exits non-zero on any failure. `scripts/fuzz.sh` runs it under
//! `ulimit -v`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use radit_fuzz::{fuzz, target, Budget, FuzzConfig, Outcome, Prepared, TARGETS};

#[derive(Parser)]
#[command(about = "Mutation fuzzing of radit's untrusted parsers")]
struct Args {
    /// A target (gguf, config-json, safetensors, tokenizer, recipe, jsonl, tsv, corpus,
    /// manifest), `all`, or `list`.
    parser: String,
    /// Run for this many minutes per target.
    #[arg(long, conflicts_with = "cases")]
    minutes: Option<f64>,
    /// Run exactly this many cases per target (default 1000).
    #[arg(long)]
    cases: Option<u64>,
    /// Mutation stream seed (default: from the clock, printed in the summary).
    #[arg(long, value_parser = parse_u64)]
    seed: Option<u64>,
    /// Reproduce one case: run only case I (with --seed) and print its outcome.
    #[arg(long)]
    case: Option<u64>,
    /// With --case: write the case's bytes here.
    #[arg(long, requires = "case")]
    save: Option<PathBuf>,
    /// Per-case time budget in milliseconds before it counts as a hang.
    #[arg(long, default_value_t = 5000)]
    case_timeout_ms: u64,
}

/// Decimal or `0x` hex, as the summary prints seeds.
fn parse_u64(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.parser == "list" {
        for t in TARGETS {
            println!("{:12} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let targets: Vec<_> = if args.parser == "all" {
        TARGETS.iter().collect()
    } else {
        match target(&args.parser) {
            Some(t) => vec![t],
            None => {
                let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                eprintln!(
                    "unknown parser `{}`; one of: {}, all, list",
                    args.parser,
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let case_budget = Duration::from_millis(args.case_timeout_ms);

    if let Some(i) = args.case {
        let mut failed = false;
        for t in targets {
            let prepared = match Prepared::new(t, case_budget) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let (file, m) = prepared.case(seed, i);
            if let Some(save) = &args.save {
                if let Err(e) = std::fs::write(save, &m.bytes) {
                    eprintln!("{}: {e}", save.display());
                    return ExitCode::FAILURE;
                }
            }
            let outcome = prepared.run_bytes(file, m.bytes, case_budget);
            failed |= matches!(outcome, Outcome::Failure(_));
            let outcome = match outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::Err(e) => format!("err: {e}"),
                Outcome::Failure(f) => format!("FAIL: {f}"),
            };
            println!(
                "{} seed {seed:#x} case {i} ({file}): {}: {outcome}",
                t.name, m.what
            );
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    let budget = match (args.minutes, args.cases) {
        (Some(m), _) => Budget::Time(Duration::from_secs_f64(m.max(0.0) * 60.0)),
        (None, Some(n)) => Budget::Cases(n),
        (None, None) => Budget::Cases(1000),
    };
    let config = FuzzConfig {
        seed,
        budget,
        case_budget,
        progress_every: Some(Duration::from_secs(10)),
    };
    let mut failed = false;
    for t in targets {
        match fuzz(t, &config) {
            Ok(report) => {
                println!("{}", report.summary());
                failed |= !report.failures.is_empty();
                if report.hung {
                    // The hung case's thread keeps running: no later target would be measured fairly.
                    break;
                }
            }
            Err(e) => {
                println!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
