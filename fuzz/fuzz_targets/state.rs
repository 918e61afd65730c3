//! The state file: the fuzz input is a whole `DIR/state` file. Parsing must refuse or accept
//! without panicking, and each accepted record's history must then load (or be refused) the
//! way the daemon loads it at start.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lvsmon::config::HistorySpec;
use lvsmon::history::History;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = lvsmon::state::parse(data) else {
        return;
    };
    let spec = HistorySpec::default();
    let mut h = History::new(&spec, &[Duration::from_secs(10)]);
    for r in &records {
        assert!(r.history.len() <= data.len());
        let _ = h.decode_real(0, &r.history);
    }
});
