//! `tunectl report STUDY --out DIR`: reads a study from the coordinator (or a saved
//! `study-data.json`) and writes its report with [`crate::study::report`].

use std::path::PathBuf;

use super::ConnectOptions;
use crate::study::data::{self, StudyData};

/// Options of `tunectl report`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportOptions {
    /// The study's name (as given to `tunectl study --name`).
    pub study: String,
    /// Directory for report.md, summary.json, study-data.json and the plots (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Validation accuracy of the default configuration (a fraction, e.g. 0.757), used when no
    /// trial of the study ran the default configuration (else the study's 75.7% is used).
    #[arg(long)]
    pub default_accuracy: Option<f64>,
    /// Read the study from a saved study-data.json instead of the coordinator.
    #[arg(long)]
    pub from_json: Option<PathBuf>,
}

/// Runs `tunectl report`, printing the files written.
///
/// # Errors
/// When the coordinator cannot be reached, the study is empty, or a file cannot be written.
pub async fn run(
    connect: &ConnectOptions,
    options: &ReportOptions,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    if let Some(accuracy) = options.default_accuracy {
        anyhow::ensure!(
            (0.0..=1.0).contains(&accuracy),
            "--default-accuracy must be a fraction between 0 and 1 (e.g. 0.757), got {accuracy}"
        );
    }
    let study: StudyData = match &options.from_json {
        Some(path) => StudyData::read_json(path)?,
        None => {
            let mut client = super::connect(connect).await?;
            data::fetch(&mut client, &options.study).await?
        }
    };
    let written = crate::study::report::write(&study, &options.out, options.default_accuracy)?;
    for path in written {
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}
