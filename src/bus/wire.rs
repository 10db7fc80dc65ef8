//! The bytes a networked bus sends for a [`BusEvent`]: a tag byte, then the message's bytes
//! or the close reason's code. The codes are this format's own, fixed here (the same bytes as
//! 0.2 sent, so that nodes of both versions read each other's events during a rolling
//! upgrade); an event this version cannot read is ignored.

use bytes::Bytes;

use crate::bus::BusEvent;
use crate::close::CloseReason;

/// Tag of a message: the payload follows.
const MESSAGE: u8 = b'm';
/// Tag of a close: one reason code follows.
const CLOSED: u8 = b'c';

/// The wire code of `reason`. New reasons take new codes; a code is never reused.
fn code(reason: CloseReason) -> u8 {
    match reason {
        CloseReason::Deleted => 0,
        CloseReason::Expired => 1,
        CloseReason::LifetimeEnded => 2,
        CloseReason::Evicted => 3,
        CloseReason::Closed => 4,
        CloseReason::Shutdown => 5,
    }
}

fn reason(code: u8) -> Option<CloseReason> {
    CloseReason::ALL
        .into_iter()
        .find(|r| self::code(*r) == code)
}

/// `event` as bytes on the wire.
pub(crate) fn encode(event: &BusEvent) -> Bytes {
    match event {
        BusEvent::Message(bytes) => {
            let mut out = Vec::with_capacity(1 + bytes.len());
            out.push(MESSAGE);
            out.extend_from_slice(bytes);
            out.into()
        }
        BusEvent::Closed(reason) => Bytes::from(vec![CLOSED, code(*reason)]),
    }
}

/// Reads what [`encode`] wrote; `None` for anything else (a newer node's event, noise).
pub(crate) fn decode(bytes: &[u8]) -> Option<BusEvent> {
    match bytes.split_first()? {
        (&MESSAGE, payload) => Some(BusEvent::Message(Bytes::copy_from_slice(payload))),
        (&CLOSED, [code]) => reason(*code).map(BusEvent::Closed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for reason in CloseReason::ALL {
            let event = BusEvent::Closed(reason);
            assert_eq!(decode(&encode(&event)), Some(event));
        }
        let event = BusEvent::Message(Bytes::from_static(b"hello"));
        assert_eq!(decode(&encode(&event)), Some(event));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"c?"), None);
        assert_eq!(decode(&[CLOSED, 0, 0]), None);
        assert_eq!(
            encode(&BusEvent::Closed(CloseReason::Deleted)).as_ref(),
            &[b'c', 0]
        );
    }
}
