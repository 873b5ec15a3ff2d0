//! `shrink <component.wasm> <out.wasm>`: the release component, its code optimised for size by
//! binaryen's `wasm-opt -Oz`, which rustc and LLVM leave about a fifth larger (README, "Size").
//!
//! `wasm-opt` reads core modules, not components, so this takes the component apart at its
//! top-level sections, hands the one large core module (the crate's own code; the others are
//! wit-component's few-byte shims) to `wasm-opt`, and puts the result back in the same place.
//! Imports and exports keep their names, so the component's wiring still fits.

use std::process::{exit, Command};

/// The component binary's section id for a core module.
const CORE_MODULE: u8 = 1;
/// What rustc's `wasm32-wasip2` target compiles with (`rustc --print cfg`); `wasm-opt` must accept
/// them in its input and may use nothing more in its output.
const FEATURES: [&str; 6] = [
    "--enable-bulk-memory",
    "--enable-multivalue",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-sign-ext",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        fail("usage: shrink <component.wasm> <out.wasm>");
    };
    let component = std::fs::read(input).unwrap_or_else(|e| fail(&format!("reading {input}: {e}")));
    let sections =
        split(&component).unwrap_or_else(|| fail(&format!("{input} is not a WebAssembly component")));
    let Some(main) =
        (0..sections.len()).filter(|&i| sections[i].0 == CORE_MODULE).max_by_key(|&i| sections[i].1.len())
    else {
        fail(&format!("{input} holds no core module"));
    };

    let module_in = format!("{output}.core.wasm");
    let module_out = format!("{output}.core-opt.wasm");
    write(&module_in, sections[main].1);
    let status = Command::new("wasm-opt")
        .args(["-Oz", "--strip-debug", "--strip-producers"])
        .args(FEATURES)
        .args([&module_in, "-o", &module_out])
        .status()
        .unwrap_or_else(|e| {
            fail(&format!("running wasm-opt (binaryen): {e}; install it with `apt-get install binaryen`"))
        });
    if !status.success() {
        fail(&format!("wasm-opt failed on {module_in} ({status})"));
    }
    let optimised =
        std::fs::read(&module_out).unwrap_or_else(|e| fail(&format!("reading {module_out}: {e}")));
    let _ = std::fs::remove_file(&module_in);
    let _ = std::fs::remove_file(&module_out);

    let mut out = component[..8].to_vec();
    for (i, (id, body)) in sections.iter().enumerate() {
        let body = if i == main { &optimised[..] } else { body };
        out.push(*id);
        leb128(&mut out, body.len());
        out.extend_from_slice(body);
    }
    write(output, &out);
    println!("{output}: {} bytes ({} before wasm-opt)", out.len(), component.len());
}

/// The top-level sections after the 8-byte preamble, or `None` if `bytes` is not a component.
fn split(bytes: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    // Magic, then version 0x0d and layer 1: a component (a core module is layer 0).
    if bytes.get(..8)? != b"\0asm\x0d\0\x01\0" {
        return None;
    }
    let mut sections = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        let (len, body_at) = read_leb128(bytes, at + 1)?;
        let body = bytes.get(body_at..body_at.checked_add(len)?)?;
        sections.push((id, body));
        at = body_at + len;
    }
    Some(sections)
}

fn read_leb128(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write(path: &str, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| fail(&format!("writing {path}: {e}")));
}

fn fail(message: &str) -> ! {
    eprintln!("shrink: {message}");
    exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_survive_the_round_trip() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, 391_656, u32::MAX as usize] {
            let mut bytes = Vec::new();
            leb128(&mut bytes, value);
            assert_eq!(read_leb128(&bytes, 0), Some((value, bytes.len())), "{value}");
        }
    }

    #[test]
    fn a_component_splits_into_its_sections_and_nothing_else_does() {
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.extend([1, 3, 7, 8, 9, 0, 0]);
        assert_eq!(split(&component), Some(vec![(1, &[7, 8, 9][..]), (0, &[][..])]));
        assert_eq!(split(b"\0asm\x01\0\0\0"), None, "a core module");
        component.truncate(component.len() - 3);
        assert_eq!(split(&component), None, "a section cut short");
    }
}
