//! The HTTP/2 frames a server sends an idle client, read only as far as
//! needed to answer what must be answered: a client acknowledges each
//! SETTINGS and each PING (RFC 9113, 6.5 and 6.7), or the server closes the
//! connection once its keepalive ping goes unanswered.

/// Bytes of a frame's header: length (3), type, flags, stream (4)
/// (RFC 9113, 4.1).
const FRAME_HEADER: usize = 9;
/// Frame types, and the flag that marks an acknowledgement.
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
/// A PING carries 8 bytes, which its acknowledgement returns.
const PING_PAYLOAD: usize = 8;

/// The HTTP/2 frames a server sends, read as they arrive in any chunks, and
/// the acknowledgements a client owes: of each SETTINGS and each PING.
#[derive(Debug, Default)]
pub struct Frames {
    header: [u8; FRAME_HEADER],
    /// Bytes of `header` received.
    have: usize,
    /// Bytes of the current frame's payload still to come.
    remaining: usize,
    ping: [u8; PING_PAYLOAD],
}

impl Frames {
    /// Reads `bytes`, appending to `replies` what the frames they end ask.
    pub fn feed(&mut self, bytes: &[u8], replies: &mut Vec<u8>) {
        for &byte in bytes {
            if self.have < FRAME_HEADER {
                self.header[self.have] = byte;
                self.have += 1;
                if self.have == FRAME_HEADER {
                    self.remaining = self.length();
                    if self.remaining == 0 {
                        self.end(replies);
                    }
                }
                continue;
            }
            if self.is_ping() {
                self.ping[PING_PAYLOAD - self.remaining] = byte;
            }
            self.remaining -= 1;
            if self.remaining == 0 {
                self.end(replies);
            }
        }
    }

    fn length(&self) -> usize {
        usize::from(self.header[0]) << 16
            | usize::from(self.header[1]) << 8
            | usize::from(self.header[2])
    }

    fn is_ping(&self) -> bool {
        self.header[3] == PING && self.length() == PING_PAYLOAD
    }

    /// The current frame is complete: answer it if it asks, and start the
    /// next.
    fn end(&mut self, replies: &mut Vec<u8>) {
        let unacknowledged = self.header[4] & ACK == 0;
        if self.header[3] == SETTINGS && unacknowledged {
            replies.extend_from_slice(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]);
        } else if self.is_ping() && unacknowledged {
            replies.extend_from_slice(&[0, 0, 8, PING, ACK, 0, 0, 0, 0]);
            replies.extend_from_slice(&self.ping);
        }
        self.have = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_pings_are_acknowledged_across_chunks() {
        let mut server = Vec::new();
        // SETTINGS with one setting, a WINDOW_UPDATE, the ACK of ours, a PING.
        server.extend_from_slice(&[0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        server.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        server.extend_from_slice(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]);
        server.extend_from_slice(&[0, 0, 8, PING, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        for split in [1, 2, 5, 9, server.len()] {
            let mut frames = Frames::default();
            let mut replies = Vec::new();
            for chunk in server.chunks(split) {
                frames.feed(chunk, &mut replies);
            }
            assert_eq!(
                replies,
                [
                    &[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0][..],
                    &[0, 0, 8, PING, ACK, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
                ]
                .concat(),
                "in chunks of {split}"
            );
        }
    }

    #[test]
    fn acknowledgements_are_not_acknowledged() {
        let mut frames = Frames::default();
        let mut replies = Vec::new();
        frames.feed(
            &[0, 0, 8, PING, ACK, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            &mut replies,
        );
        frames.feed(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0], &mut replies);
        assert!(replies.is_empty());
    }
}
