//! SIP payloads come from attackers: any bytes parse to a message or an error, every URI a
//! request names splits without a panic, and the slices it keeps lie inside the payload.
#![no_main]

use geofence_core::sip::{parse, SipMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(SipMessage::Request(request)) = parse(bytes) {
        let inside = |slice: &[u8]| slice.is_empty() || bytes.as_ptr_range().contains(&slice.as_ptr());
        assert!(inside(request.uri.host));
        for uri in [request.from(), request.to(), request.contact()].into_iter().flatten() {
            assert!(inside(uri.host) && uri.user.is_none_or(inside));
            let _ = uri.host_is_address();
        }
        let _ = (request.sent_by(), request.cseq());
    }
});
