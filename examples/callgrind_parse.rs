//! A fixed parse loop for `valgrind --tool=callgrind` (instruction counts are repeatable on a
//! noisy machine, unlike time): `cargo build --release --example callgrind_parse`.

#[path = "../benches/common/messages.rs"]
mod messages;

fn main() {
    let (_, msg) = messages::messages().swap_remove(0);
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().unwrap());
    let mut t = 0;
    for _ in 0..n {
        let m = sipwall::sip::parse(
            std::hint::black_box(msg.as_bytes()),
            sipwall::sip::Framing::Datagram,
        )
        .unwrap();
        t += m.len;
    }
    println!("{t}");
}
