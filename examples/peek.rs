fn main() {
    for p in std::env::args().skip(1) {
        let b = std::fs::read(&p).unwrap();
        match sipwall::sip::parse(&b, sipwall::sip::Framing::Datagram) {
            Ok(m) => println!(
                "{p}: OK {:?} ruri={:?} from={:?} to={:?} tag={:?}",
                m.method()
                    .map(|x| x.to_string())
                    .or(m.status().map(|s| s.to_string())),
                m.request_uri().and_then(|u| u.host).map(|h| h.to_string()),
                m.from.host().map(|h| h.to_string()),
                m.to.host().map(|h| h.to_string()),
                m.to.tag.map(|t| String::from_utf8_lossy(t).to_string())
            ),
            Err(e) => println!("{p}: ERR {e:?}"),
        }
    }
}
