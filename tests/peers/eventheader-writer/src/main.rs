//! eh-writer: registers EventHeader tracepoints with user_events, says which on stdout ("ready NAME..."), waits
//! for a line on stdin (the listener is recording: perf's enable bit flips when it opens the event, before it
//! records) and until all of them are enabled, writes every event of the catalogue below `--repeat N` times
//! (default 1), prints "wrote COUNT" and exits. `--no-wait` writes at once (to measure the write path).
//!
//! The catalogue covers each EventHeader field encoding with each format that applies to it, as scalars and as
//! variable-length arrays, structs (nested, tagged, and an array of structs), field tags, event tags, ids,
//! versions, opcodes, activity ids, levels, keywords and a provider group.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{env, process, thread};

use eventheader_dynamic as ehd;
use ehd::{EventBuilder, FieldEncoding as E, FieldFormat as F, Level, Opcode};

const PROVIDER: &str = "DyntelEhWriter";
const GROUP: &str = "dyntelgroup";

struct Sets {
    verbose: Arc<ehd::EventSet>,
    error: Arc<ehd::EventSet>,
    grouped: Arc<ehd::EventSet>,
}

fn main() -> process::ExitCode {
    let mut repeat = 1u32;
    let mut wait = true;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => repeat = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--no-wait" => wait = false,
            _ => {
                eprintln!("usage: eh-writer [--repeat N] [--no-wait]");
                return process::ExitCode::from(2);
            }
        }
    }
    let mut plain = ehd::Provider::new(PROVIDER, &ehd::Provider::new_options());
    let mut grouped_provider = ehd::Provider::new(PROVIDER, ehd::Provider::new_options().group_name(GROUP));
    let sets = Sets {
        verbose: plain.register_set(Level::Verbose, 0x1),
        error: plain.register_set(Level::Error, 0x8000_0000_0000_00F0),
        grouped: grouped_provider.register_set(Level::Informational, 0x2),
    };
    for set in [&sets.verbose, &sets.error, &sets.grouped] {
        if set.errno() != 0 {
            eprintln!("eh-writer: registration failed: errno {}", set.errno());
            return process::ExitCode::FAILURE;
        }
    }
    let names = [
        format!("{}_L{:x}K{:x}", PROVIDER, Level::Verbose.as_int(), 0x1u64),
        format!("{}_L{:x}K{:x}", PROVIDER, Level::Error.as_int(), 0x8000_0000_0000_00F0u64),
        format!("{}_L{:x}K{:x}G{}", PROVIDER, Level::Informational.as_int(), 0x2u64, GROUP),
    ];
    println!("ready {}", names.join(" "));
    let _ = std::io::stdout().flush();
    if wait {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let deadline = Instant::now() + Duration::from_secs(300);
        while !(sets.verbose.enabled() && sets.error.enabled() && sets.grouped.enabled()) {
            if Instant::now() > deadline {
                eprintln!("eh-writer: not enabled after 300 s");
                return process::ExitCode::FAILURE;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    let mut b = EventBuilder::new();
    let mut written = 0u64;
    let mut failed = 0u64;
    for round in 0..repeat {
        for event in CATALOGUE {
            let set = match event.0 {
                Which::Verbose => &sets.verbose,
                Which::Error => &sets.error,
                Which::Grouped => &sets.grouped,
            };
            let (activity, related) = (event.1)(&mut b, round);
            let status = b.write(set, activity.as_ref(), related.as_ref());
            if status == 0 {
                written += 1;
            } else if wait {
                failed += 1;
                if failed == 1 {
                    eprintln!("eh-writer: write failed with errno {}", status);
                }
            }
        }
    }
    println!("wrote {}", written);
    plain.unregister();
    grouped_provider.unregister();
    if failed > 0 {
        eprintln!("eh-writer: {} writes failed", failed);
        return process::ExitCode::FAILURE;
    }
    process::ExitCode::SUCCESS
}

#[derive(Clone, Copy)]
enum Which {
    Verbose,
    Error,
    Grouped,
}

type Ids = (Option<[u8; 16]>, Option<[u8; 16]>);
type Build = fn(&mut EventBuilder, u32) -> Ids;

const NONE: Ids = (None, None);
const GUID: [u8; 16] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10,
];
const IPV6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const INT_FORMATS: [(&str, F); 4] = [
    ("def", F::Default),
    ("uns", F::UnsignedInt),
    ("sig", F::SignedInt),
    ("hex", F::HexInt),
];

const CATALOGUE: &[(Which, Build)] = &[
    (Which::Verbose, integers),
    (Which::Verbose, integer_formats),
    (Which::Verbose, floats),
    (Which::Verbose, booleans),
    (Which::Verbose, chars),
    (Which::Verbose, guid_ip_port),
    (Which::Verbose, time_errno_pid),
    (Which::Verbose, zstrings),
    (Which::Verbose, counted_strings),
    (Which::Verbose, binary),
    (Which::Verbose, arrays),
    (Which::Verbose, string_arrays),
    (Which::Verbose, structs),
    (Which::Verbose, struct_array),
    (Which::Verbose, empty),
    (Which::Error, identity),
    (Which::Error, activity_start),
    (Which::Grouped, grouped),
];

fn integers(b: &mut EventBuilder, round: u32) -> Ids {
    b.reset("Integers", 0);
    for (tag, f) in INT_FORMATS {
        b.add_value(&format!("u8{}", tag), 0xFEu8, f, 0)
            .add_value(&format!("i8{}", tag), -2i8, f, 0)
            .add_value(&format!("u16{}", tag), 0xFFFEu16, f, 0)
            .add_value(&format!("i16{}", tag), i16::MIN, f, 0)
            .add_value(&format!("u32{}", tag), u32::MAX - round, f, 0)
            .add_value(&format!("i32{}", tag), i32::MIN, f, 0)
            .add_value(&format!("u64{}", tag), u64::MAX, f, 0)
            .add_value(&format!("i64{}", tag), i64::MIN + 1, f, 0)
            .add_value(&format!("usize{}", tag), usize::MAX / 3, f, 0)
            .add_value(&format!("isize{}", tag), -12345isize, f, 0);
    }
    b.add_value("v128", GUID, F::Default, 0)
        .add_value("v128hex", GUID, F::HexBytes, 0)
        .add_value("v8hexbytes", [0xABu8], F::HexBytes, 0)
        .add_value("v16hexbytes", [0xAB, 0xCDu8], F::HexBytes, 0)
        .add_value("v32hexbytes", [1u8, 2, 3, 4], F::HexBytes, 0)
        .add_value("v64hexbytes", [1u8, 2, 3, 4, 5, 6, 7, 8], F::HexBytes, 0);
    NONE
}

fn integer_formats(b: &mut EventBuilder, _: u32) -> Ids {
    // Formats that apply to integers but are not integer formats: what a decoder does with each pairing.
    b.reset("IntegerFormats", 0)
        .add_value("u8string8", b'A', F::String8, 0)
        .add_value("u8string8hi", 0xE9u8, F::String8, 0)
        .add_value("u16utf", 0x263Au16, F::StringUtf, 0)
        .add_value("u32utf", 0x1F600u32, F::StringUtf, 0)
        .add_value("u32utfbad", 0x11_0000u32, F::StringUtf, 0)
        .add_value("u8float", 1u8, F::Float, 0)
        .add_value("u32float", 0x3F80_0000u32, F::Float, 0)
        .add_value("u64float", 0x4000_0000_0000_0000u64, F::Float, 0)
        .add_value("u16port", 0x5000u16, F::Port, 0)
        .add_value("u32ipv4", u32::from_ne_bytes([192, 168, 1, 20]), F::IPv4, 0)
        .add_value("u64hexbytes", 0x0102_0304_0506_0708u64, F::HexBytes, 0)
        .add_value("u32pid", 4321u32, F::Pid, 0)
        .add_value("u16bool", 2u16, F::Boolean, 0)
        .add_value("u64bool", 1u64, F::Boolean, 0)
        .add_value("u16errno", 13u16, F::Errno, 0)
        .add_value("u64errno", 2u64, F::Errno, 0)
        .add_value("u16time", 100u16, F::Time, 0)
        .add_value("u8uuid", 7u8, F::Uuid, 0)
        .add_value("u32json", 5u32, F::StringJson, 0);
    NONE
}

fn floats(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("Floats", 0)
        .add_value("f32", 3.25f32, F::Float, 0)
        .add_value("f32default", 3.25f32, F::Default, 0) // Value32's default format: an unsigned integer
        .add_value("f32third", 1.0f32 / 3.0, F::Float, 0)
        .add_value("f32nan", f32::NAN, F::Float, 0)
        .add_value("f32inf", f32::INFINITY, F::Float, 0)
        .add_value("f32neginf", f32::NEG_INFINITY, F::Float, 0)
        .add_value("f32tiny", f32::MIN_POSITIVE, F::Float, 0)
        .add_value("f32max", f32::MAX, F::Float, 0)
        .add_value("f64", -6.5e300f64, F::Float, 0)
        .add_value("f64third", 1.0f64 / 3.0, F::Float, 0)
        .add_value("f64nan", f64::NAN, F::Float, 0)
        .add_value("f64neginf", f64::NEG_INFINITY, F::Float, 0)
        .add_value("f64negzero", -0.0f64, F::Float, 0)
        .add_value("f64small", 1.5e-310f64, F::Float, 0)
        .add_value("f32hex", 1.0f32, F::HexInt, 0)
        .add_value_sequence("f32s", &[0.5f32, -1.25, 1e10], F::Float, 0)
        .add_value_sequence("f64s", &[0.1f64, 2.0, f64::INFINITY], F::Float, 0);
    NONE
}

fn booleans(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("Booleans", 0)
        .add_value("btrue", true, F::Default, 0)
        .add_value("bfalse", false, F::Default, 0)
        .add_value("u8b2", 2u8, F::Boolean, 0)
        .add_value("u8b255", 255u8, F::Boolean, 0)
        .add_value("i32bneg", -1i32, F::Boolean, 0)
        .add_value("u32b1", 1u32, F::Boolean, 0)
        .add_value("i32bmin", i32::MIN, F::Boolean, 0)
        .add_value_sequence("bools", &[true, false, true], F::Default, 0)
        .add_value_sequence("u32bools", &[0u32, 1, 7], F::Boolean, 0);
    NONE
}

fn chars(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("Chars", 0)
        .add_value("char", 'Z', F::Default, 0)
        .add_value("charsmile", '\u{1F600}', F::Default, 0)
        .add_value("char8", b'q', F::String8, 0)
        .add_value("char8tab", b'\t', F::String8, 0)
        .add_value("char16", 0x00E9u16, F::StringUtf, 0)
        .add_value("char16nul", 0u16, F::StringUtf, 0)
        .add_value("char32", 0x10FFFFu32, F::StringUtf, 0)
        .add_value_sequence("char8s", b"How", F::String8, 0x10)
        .add_value_sequence("chars", &['a', '\n', '\u{263A}'], F::Default, 0);
    NONE
}

fn guid_ip_port(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("GuidIpPort", 0)
        .add_value("guid", GUID, F::Uuid, 0)
        .add_value("ipv6", IPV6, F::IPv6, 0)
        .add_value("ipv6new", IPV6, F::IPAddress, 0)
        .add_value("ipv4bytes", [10u8, 0, 0, 1], F::IPv4, 0)
        .add_value("ipv4u32", u32::from_ne_bytes([127, 0, 0, 1]), F::IPAddress, 0)
        .add_value("port", 0x1F90u16, F::Port, 0)
        .add_value("portbig", u16::MAX, F::Port, 0)
        .add_value_sequence("guids", &[GUID, [0u8; 16]], F::Uuid, 0)
        .add_value_sequence("ports", &[80u16.to_be(), 443u16.to_be()], F::Port, 0)
        .add_value_sequence("ipv4s", &[u32::from_ne_bytes([1, 2, 3, 4])], F::IPv4, 0)
        .add_value_sequence("ipv6s", &[IPV6], F::IPv6, 0);
    NONE
}

fn time_errno_pid(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("TimeErrnoPid", 0)
        .add_value("time32", 1_700_000_000i32, F::Time, 0)
        .add_value("time32neg", i32::MIN, F::Time, 0)
        .add_value("time32zero", 0i32, F::Time, 0)
        .add_value("time64", 1_700_000_000i64, F::Time, 0)
        .add_value("time64far", 9_000_000_000_000_000_000i64, F::Time, 0)
        .add_value("time64old", -11_644_473_601i64, F::Time, 0)
        .add_value("time64max", 253_402_300_799i64, F::Time, 0)
        .add_value("time64past", 253_402_300_800i64, F::Time, 0)
        .add_value("errno0", 0i32, F::Errno, 0)
        .add_value("errnoENOENT", 2i32, F::Errno, 0)
        .add_value("errno133", 133i32, F::Errno, 0)
        .add_value("errno134", 134i32, F::Errno, 0)
        .add_value("errnoneg", -1i32, F::Errno, 0)
        .add_value("pid", 1i32, F::Pid, 0)
        .add_value("pidneg", -5i32, F::Pid, 0)
        .add_value_sequence("times", &[0i64, 86_400], F::Time, 0)
        .add_value_sequence("errnos", &[1i32, 22], F::Errno, 0)
        .add_value_sequence("pids", &[1u32, 2], F::Pid, 0);
    NONE
}

fn zstrings(b: &mut EventBuilder, _: u32) -> Ids {
    let wide: Vec<u16> = "wide \u{263A} \u{1F600}".encode_utf16().collect();
    let wide32: Vec<u32> = "w32 \u{1F600}".chars().map(|c| c as u32).collect();
    b.reset("ZStrings", 0)
        .add_cstr("utf8", "plain text", F::Default, 0)
        .add_cstr("utf8ctl", "tab\there\nnl\rcr\u{8}bs\u{c}ff\u{1}one\u{1f}us\"q\\b", F::Default, 0)
        .add_cstr("latin1", b"caf\xe9 \xff".as_slice(), F::String8, 0)
        .add_cstr("utfbad", b"bad \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80".as_slice(), F::StringUtf, 0)
        .add_cstr("utfbom", b"\xef\xbb\xbfbom8".as_slice(), F::StringUtfBom, 0)
        .add_cstr("utfnobom", "nobom", F::StringUtfBom, 0)
        .add_cstr("xml", "<a x=\"1\">&amp;</a>", F::StringXml, 0)
        .add_cstr("json", "{\"k\": [1, 2]}", F::StringJson, 0)
        .add_cstr("empty", "", F::Default, 0)
        .add_cstr("hexbytes", "hex", F::HexBytes, 0)
        .add_cstr("utf16", wide.as_slice(), F::Default, 0x16)
        .add_cstr("utf16bom", [0xFEFFu16, 0x0041, 0x0042].as_slice(), F::StringUtfBom, 0)
        .add_cstr("utf16bombe", [0xFFFEu16, 0x4100, 0x4200].as_slice(), F::StringUtfBom, 0)
        .add_cstr("utf16lone", [0xD800u16, 0x0041].as_slice(), F::StringUtf, 0)
        .add_cstr("utf32", wide32.as_slice(), F::Default, 0x32)
        .add_cstr("utf32bad", [0x41u32, 0x11_0000, 0xD800, 0x7FFF_FFFF].as_slice(), F::StringUtf, 0)
        .add_cstr("utf32bom", [0xFEFFu32, 0x43].as_slice(), F::StringUtfBom, 0)
        .add_cstr("str8hex", "ab", F::HexBytes, 0);
    NONE
}

fn counted_strings(b: &mut EventBuilder, _: u32) -> Ids {
    let wide: Vec<u16> = "counted \u{263A}".encode_utf16().collect();
    b.reset("CountedStrings", 0)
        .add_str("utf8", "counted", F::Default, 0)
        .add_str("withnul", b"a\0b".as_slice(), F::Default, 0)
        .add_str("latin1", b"\xe0 la".as_slice(), F::String8, 0)
        .add_str("utf", "utf \u{1F600}", F::StringUtf, 0)
        .add_str("utfbom", b"\xef\xbb\xbfbom".as_slice(), F::StringUtfBom, 0)
        .add_str("xml", "<x/>", F::StringXml, 0)
        .add_str("json", "[true]", F::StringJson, 0)
        .add_str("hex", "hex", F::HexBytes, 0)
        .add_str("empty", "", F::Default, 0)
        .add_str("utf16", wide.as_slice(), F::Default, 0)
        .add_str("utf16hex", [0x41u16, 0x42].as_slice(), F::HexBytes, 0)
        .add_str("utf32", [0x1F600u32, 0x41].as_slice(), F::StringUtf, 0)
        .add_str("utf32bom", [0xFEFFu32, 0x44].as_slice(), F::StringUtfBom, 0)
        .add_str("tagged", "t", F::Default, 0x7FFF);
    NONE
}

fn binary(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("Binary", 0)
        .add_binary("bin", [0u8, 1, 0x7F, 0x80, 0xFF].as_slice(), F::Default, 0)
        .add_binary("binhex", [0xDEu8, 0xAD, 0xBE, 0xEF].as_slice(), F::HexBytes, 0)
        .add_binary("binempty", [0u8; 0].as_slice(), F::Default, 0)
        .add_binary("binstring8", b"text".as_slice(), F::String8, 0)
        .add_binary("binutf", "utf\u{e9}".as_bytes(), F::StringUtf, 0)
        .add_binary("binuns", [1u8, 2].as_slice(), F::UnsignedInt, 0)
        .add_binary("binuns4", [1u8, 2, 3, 4].as_slice(), F::UnsignedInt, 0)
        .add_binary("binsig8", [0xFFu8; 8].as_slice(), F::SignedInt, 0)
        .add_binary("binhexint", [0x10u8, 0x20].as_slice(), F::HexInt, 0)
        .add_binary("binuns3", [1u8, 2, 3].as_slice(), F::UnsignedInt, 0)
        .add_binary("binip4", [10u8, 1, 2, 3].as_slice(), F::IPAddress, 0)
        .add_binary("binip6", IPV6.as_slice(), F::IPAddress, 0)
        .add_binary("binuuid", GUID.as_slice(), F::Uuid, 0)
        .add_binary("binbool", [1u8].as_slice(), F::Boolean, 0)
        .add_binary("binfloat", 2.5f32.to_ne_bytes().as_slice(), F::Float, 0)
        .add_binary("bintime", 86_400i64.to_ne_bytes().as_slice(), F::Time, 0)
        .add_binary("binerrno", 2i32.to_ne_bytes().as_slice(), F::Errno, 0)
        .add_binary("binpid", 9i32.to_ne_bytes().as_slice(), F::Pid, 0)
        .add_binary("binport", [0x1Fu8, 0x90].as_slice(), F::Port, 0)
        .add_binary_sequence("bins", [[1u8, 2].as_slice(), [].as_slice(), [3u8].as_slice()], F::Default, 0)
        .add_binary_sequence("nullable", [[5u8].as_slice(), [].as_slice()], F::UnsignedInt, 0);
    NONE
}

fn arrays(b: &mut EventBuilder, round: u32) -> Ids {
    let many: Vec<u32> = (0..300).map(|i| i * 7 + round).collect();
    b.reset("Arrays", 0)
        .add_value_sequence("u8s", &[1u8, 2, 255], F::Default, 0)
        .add_value_sequence("i8s", &[-1i8, 0, 127], F::SignedInt, 0)
        .add_value_sequence("u16hex", &[0xABCDu16, 1], F::HexInt, 0)
        .add_value_sequence("i16s", &[-300i16, 300], F::Default, 0)
        .add_value_sequence("u32s", &many, F::Default, 0)
        .add_value_sequence("i32s", &[i32::MIN, -1, 0, i32::MAX], F::Default, 0)
        .add_value_sequence("u64s", &[u64::MAX, 0], F::UnsignedInt, 0x64)
        .add_value_sequence("i64hex", &[-1i64, 16], F::HexInt, 0)
        .add_value_sequence("empty", &[0u32; 0], F::Default, 0)
        .add_value_sequence("v128s", &[GUID, IPV6], F::HexBytes, 0)
        .add_value_sequence("u8hexbytes", &[0xA5u8, 0x5A], F::HexBytes, 0);
    NONE
}

fn string_arrays(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("StringArrays", 0)
        .add_cstr_sequence("cstrs", ["one", "", "three"], F::Default, 0)
        .add_cstr_sequence("cstrs8", [b"\xe9t\xe9".as_slice(), b"x".as_slice()], F::String8, 0x8)
        .add_cstr_sequence("cstrs16", [[0x41u16, 0x42].as_slice(), [0x263Au16].as_slice()], F::Default, 0)
        .add_cstr_sequence("cstrs32", [[0x1F600u32].as_slice()], F::Default, 0)
        .add_str_sequence("strs", ["a", "bc", ""], F::Default, 0)
        .add_str_sequence("strsjson", ["{}", "[]"], F::StringJson, 0)
        .add_str_sequence("strs16", [[0x43u16].as_slice()], F::StringUtf, 0)
        .add_str_sequence("strs32", [[0x44u32, 0x45].as_slice()], F::Default, 0)
        .add_str_sequence("strshex", ["ab", "c"], F::HexBytes, 0);
    NONE
}

fn structs(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("Structs", 0)
        .add_value("before", 1u8, F::Default, 0)
        .add_struct("outer", 3, 0xBEEF)
        .add_cstr("name", "out", F::Default, 0x12)
        .add_struct("inner", 2, 0)
        .add_value("x", 10i32, F::Default, 0)
        .add_struct("deepest", 1, 0x7)
        .add_value_sequence("tagged", b"How", F::String8, 0x10)
        .add_value("after", 2u16, F::Default, 0x1)
        .add_struct("second", 1, 0)
        .add_value("ok", true, F::Default, 0xFFFF);
    NONE
}

fn struct_array(b: &mut EventBuilder, _: u32) -> Ids {
    // An array of structs: the struct's metadata once (Struct encoding with the array flag, its field count in the
    // format byte), then a u16 element count and each element's fields; the dynamic builder has no method for it.
    b.reset("StructArray", 0)
        .raw_add_meta_vcount("points", E::Struct, F::from_int(2), 0x55)
        .raw_add_meta_scalar("x", E::Value32, F::SignedInt, 0)
        .raw_add_meta_scalar("label", E::ZStringChar8, F::Default, 0x2)
        .raw_add_data_value(&3u16);
    for (x, label) in [(1i32, &b"a\0"[..]), (-2, b"\0"), (3, b"ccc\0")] {
        b.raw_add_data_value(&x).raw_add_data_slice(label);
    }
    b.add_value("trailer", 9u8, F::Default, 0);
    NONE
}

fn empty(b: &mut EventBuilder, _: u32) -> Ids {
    b.reset("Empty", 0);
    NONE
}

fn identity(b: &mut EventBuilder, round: u32) -> Ids {
    b.reset("Identity", 0x1234)
        .id_version(1000, 11)
        .opcode(Opcode::Info)
        .add_value("round", round, F::Default, 0);
    NONE
}

fn activity_start(b: &mut EventBuilder, _: u32) -> Ids {
    let mut related = GUID;
    related.reverse();
    b.reset("ActivityStart", 0)
        .opcode(Opcode::ActivityStart)
        .add_cstr("what", "start", F::Default, 0);
    (Some(GUID), Some(related))
}

fn grouped(b: &mut EventBuilder, round: u32) -> Ids {
    b.reset("Grouped", 0xFFFF)
        .opcode(Opcode::from_int(200))
        .add_value("round", round, F::HexInt, 0xFFFF);
    (Some(IPV6), None)
}
