//! A digest of everything the parser says about many mutated messages, to compare two builds
//! of a parser change: `parse_digest [SEEDS_DIR..] > a.txt` on each build, then `diff`. Seeds
//! are the bench messages, tests/data/rfc4475 and fuzz/corpus/parse (plus any directories
//! named); each is mutated the same way on every build (a fixed generator), and each mutant is
//! read as a datagram, as a stream, and as every 7-byte stream prefix. One line a mutant: its
//! number and a hash of the results; `parse_digest --show N` prints mutant N's results in full.

#[path = "../benches/common/messages.rs"]
#[allow(dead_code)]
mod messages;

use sipwall::sip::{self, Framing};
use std::fmt::Write as _;

const MUTANTS: usize = 1500;
const INTERESTING: &[u8] = b" \t\r\n:;<>\"\\@%\0Aa,=.-[]?/0#\x80\xff";

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut Lcg) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..1 + rng.next() % 3 {
        if m.is_empty() {
            break;
        }
        let at = rng.next() % m.len();
        match rng.next() % 7 {
            0 | 1 => m[at] = INTERESTING[rng.next() % INTERESTING.len()],
            2 => {
                m.remove(at);
            }
            3 => m.insert(at, INTERESTING[rng.next() % INTERESTING.len()]),
            4 => {
                // a line again, elsewhere
                let s = m[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let e = m[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(m.len(), |p| at + p + 1);
                let line = m[s..e].to_vec();
                let to = rng.next() % (m.len() + 1);
                m.splice(to..to, line);
            }
            5 => {
                let e = (at + 1 + rng.next() % 12).min(m.len());
                let up = rng.next() % 2 == 0;
                for b in &mut m[at..e] {
                    *b = if up {
                        b.to_ascii_uppercase()
                    } else {
                        b.to_ascii_lowercase()
                    };
                }
            }
            _ => m.truncate(at),
        }
    }
    m
}

fn describe(m: &[u8]) -> String {
    let mut out = String::new();
    match sip::parse(m, Framing::Datagram) {
        Ok(p) => {
            let _ = write!(out, "{p:?} user={:?}", p.auth_username());
            for h in p.headers() {
                let _ = write!(out, " {h:?}");
            }
        }
        Err(e) => {
            let _ = write!(out, "err {e:?}");
        }
    }
    let _ = write!(out, "\nstream {:?}", sip::parse(m, Framing::Stream));
    for cut in (0..m.len()).step_by(7) {
        let _ = write!(
            out,
            "\n{cut} {:?}",
            sip::parse(&m[..cut], Framing::Stream).map(|p| p.len)
        );
    }
    out
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let show = args.iter().position(|a| a == "--show").map(|i| {
        let n: usize = args[i + 1].parse().expect("--show N");
        args.drain(i..i + 2);
        n
    });
    let mut seeds: Vec<Vec<u8>> = messages::messages()
        .into_iter()
        .map(|(_, m)| m.into_bytes())
        .collect();
    let mut dirs = vec!["tests/data/rfc4475".to_string(), "fuzz/corpus/parse".into()];
    dirs.extend(args);
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{d}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        seeds.extend(files.iter().map(|f| std::fs::read(f).unwrap()));
    }
    let mut rng = Lcg(7);
    let mut n = 0;
    for seed in &seeds {
        for k in 0..=MUTANTS {
            let m = if k == 0 {
                seed.clone()
            } else {
                mutate(seed, &mut rng)
            };
            match show {
                Some(s) if s == n => {
                    println!("{:?}\n{}", String::from_utf8_lossy(&m), describe(&m));
                    return;
                }
                Some(_) => {}
                None => println!("{n} {:016x}", fnv(&describe(&m))),
            }
            n += 1;
        }
    }
}
