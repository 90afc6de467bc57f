//! tracepoint-json: perf.data (file or pipe mode) -> one JSON object per sample, one a line, formatted by
//! tracepoint_decode with the reference's default conversion options (field tags, hex as strings, ...) but with
//! no optional spaces, so each line can be compared with `dyntel decode --format jsonl`.
//!
//! Usage: tracepoint-json [--order file|time] [--count] FILE...     (FILE may be /dev/stdin for a pipe)
//! Exit status: 0, or 1 if a file could not be opened or read to its end (the error is on stderr).

use std::fmt::Write as _;
use std::io::Write as _;
use std::{env, io, process};

use tracepoint_decode as td;
use tracepoint_perf as tp;

fn main() -> process::ExitCode {
    let mut order = tp::PerfDataFileEventOrder::File;
    let mut count_only = false;
    let mut files = Vec::new();
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--order" => match args.next().as_deref() {
                Some("file") => order = tp::PerfDataFileEventOrder::File,
                Some("time") => order = tp::PerfDataFileEventOrder::Time,
                other => {
                    eprintln!("tracepoint-json: --order takes file or time, not {:?}", other);
                    return process::ExitCode::from(2);
                }
            },
            "--count" => count_only = true,
            _ if arg.starts_with("--") => {
                eprintln!("tracepoint-json: unknown option {}", arg);
                return process::ExitCode::from(2);
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("usage: tracepoint-json [--order file|time] [--count] FILE...");
        return process::ExitCode::from(2);
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut failed = false;
    let mut total = 0u64;
    for file in &files {
        match decode_file(file, order, count_only, &mut out) {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("tracepoint-json: {}: {}", file, e);
                failed = true;
            }
        }
    }
    if count_only {
        let _ = writeln!(out, "{}", total);
    }
    if out.flush().is_err() {
        failed = true;
    }
    if failed {
        process::ExitCode::FAILURE
    } else {
        process::ExitCode::SUCCESS
    }
}

/// The reference's default conversion options less `Space`: the JSON is compact like dyntel's.
const CONVERT: td::PerfConvertOptions = td::PerfConvertOptions::Default.and_not(td::PerfConvertOptions::Space);

fn decode_file(
    file: &str,
    order: tp::PerfDataFileEventOrder,
    count_only: bool,
    out: &mut impl io::Write,
) -> io::Result<u64> {
    let mut reader = tp::PerfDataFileReader::new();
    reader.open_file(file, order)?;
    let mut ctx = td::EventHeaderEnumeratorContext::new();
    let mut line = String::with_capacity(4096);
    let mut samples = 0u64;
    let mut unreadable = 0u64;
    while reader.move_next_event()? {
        let event = reader.current_event();
        if event.header.ty != td::PerfEventHeaderType::Sample {
            continue;
        }
        samples += 1;
        line.clear();
        match reader.get_sample_event_info(&event) {
            Err(e) => {
                // NoData: the attr has neither PERF_SAMPLE_ID nor IDENTIFIER (perf leaves them out when it
                // records one event); this reader then cannot tell which event a sample is.
                unreadable += 1;
                if unreadable <= 3 {
                    eprintln!("tracepoint-json: {}: sample {} unreadable: {}", file, samples, e);
                }
                continue;
            }
            Ok(info) => format_sample(&mut ctx, &info, &mut line).expect("writing to a String"),
        }
        if !count_only {
            out.write_all(line.as_bytes())?;
        }
    }
    if unreadable > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} of {} samples unreadable", unreadable, samples),
        ));
    }
    Ok(samples)
}

fn format_sample(
    ctx: &mut td::EventHeaderEnumeratorContext,
    info: &td::PerfSampleEventInfo,
    line: &mut String,
) -> std::fmt::Result {
    if let Ok(mut fields) = ctx.enumerate(info) {
        // EventHeader: identity, then every item (tags in the names), then the header's metadata.
        let eh = fields.event_info();
        write!(line, "{{\"n\":\"{}\"", eh.json_identity_display())?;
        fields.write_json_item_and_move_next_sibling(line, true, CONVERT)?;
        if fields.state() == td::EventHeaderEnumeratorState::Error {
            eprintln!("tracepoint-json: {}: {}", eh.identity_display(), fields.last_error());
        }
        line.push_str(",\"meta\":{");
        eh.json_meta_display(Some(info)).convert_options(CONVERT).write_to(line)?;
    } else if let Some(format) = info.format() {
        // A tracefs tracepoint: its own fields, the common_* ones left out as the reference does.
        write!(line, "{{\"n\":\"{}\"", info.json_name_display())?;
        for field in format.fields().iter().skip(format.common_field_count()) {
            let value = field.get_field_value(info);
            let mut shown = value.json_display();
            shown.convert_options(CONVERT);
            write!(line, ",\"{}\":{}", td::display::JsonEscapeDisplay::new(field.name()), shown)?;
        }
        line.push_str(",\"meta\":{");
        info.json_meta_display().convert_options(CONVERT).write_to(line)?;
    } else {
        write!(line, "{{\"n\":\"{}\"", info.json_name_display())?;
        line.push_str(",\"meta\":{");
        info.json_meta_display().convert_options(CONVERT).write_to(line)?;
    }
    line.push_str("}}\n");
    Ok(())
}
