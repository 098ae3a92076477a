//! Framing errors: bad length prefixes, truncation and short reads (`read_frame`,
//! `read_message`).

use super::*;

#[test]
fn clean_end_of_stream_before_any_byte_is_not_an_error() {
    assert!(read_frame(&mut Cursor::new(&[][..])).unwrap().is_none());
    assert!(read_message(&mut Cursor::new(&[][..])).unwrap().is_none());
}

#[test]
fn empty_body_is_refused_by_decode() {
    assert_protocol_error(Message::decode(&[]), "empty body");
}

#[test]
fn zero_length_prefix_is_refused() {
    assert_refused_cheaply("length 0", || {
        read_frame(&mut Cursor::new(&[0, 0, 0, 0][..]))
    });
    // Even when more bytes follow: a zero-length frame is never valid.
    let mut input = vec![0, 0, 0, 0];
    input.extend(Message::Keepalive.encode());
    assert_refused_cheaply("length 0 then a frame", || {
        read_message(&mut Cursor::new(&input))
    });
}

#[test]
fn oversized_length_prefix_is_refused_before_allocating() {
    // The peer claims 4 GiB and then sends a little: the reader must not size a buffer by
    // the claim.
    let mut input = u32be(u32::MAX).to_vec();
    input.extend_from_slice(b"some bytes");
    assert_refused_cheaply("length 0xFFFFFFFF", || read_frame(&mut Cursor::new(&input)));
    assert_refused_cheaply("length 0xFFFFFFFF", || {
        read_message(&mut Cursor::new(&input))
    });
}

#[test]
fn length_one_over_the_cap_is_refused_even_when_the_bytes_follow() {
    let len = MAX_FRAME_LEN + 1;
    let mut input = u32be(len).to_vec();
    input.resize(4 + len as usize, 0);
    let reason = {
        let start = Instant::now();
        let (result, largest) = largest_allocation_during(|| read_frame(&mut Cursor::new(&input)));
        assert!(start.elapsed() < QUICKLY);
        assert!(largest <= SMALL_ALLOCATION, "allocated {largest} bytes");
        assert_protocol_error(result, "length MAX_FRAME_LEN + 1")
    };
    assert!(reason.contains("cap"), "the reason names the cap: {reason}");
}

#[test]
fn http_and_tls_greetings_are_refused_as_oversized_frames() {
    // A browser or a TLS client talking to a dsys port: their first four bytes read as a
    // length far above the cap, so the connection is refused at once.
    for greeting in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00][..],
    ] {
        assert_refused_cheaply("foreign greeting", || {
            read_message(&mut Cursor::new(greeting))
        });
    }
}

/// Where to cut a frame of `len` bytes: everywhere in `1..len` when it is small. In a
/// large one (the full file chunk) every byte of the first and last KiB, where all the
/// fields and lengths are, and every 4,093rd byte of the payload in between; cutting a
/// 256 KiB frame at every byte would copy about 10^11 bytes.
fn cut_points(len: usize) -> Vec<usize> {
    const EDGE: usize = 1024;
    if len <= 4 * EDGE {
        return (1..len).collect();
    }
    (1..EDGE)
        .chain((EDGE..len - EDGE).step_by(4093))
        .chain(len - EDGE..len)
        .collect()
}

#[test]
fn truncation_anywhere_in_a_frame_is_refused() {
    for message in sample_messages() {
        let encoded = message.encode();
        // Zero bytes is a clean end of stream; 1 to len-1 bytes is a torn frame.
        assert!(
            read_message(&mut Cursor::new(&encoded[..0]))
                .unwrap()
                .is_none()
        );
        for cut in cut_points(encoded.len()) {
            assert_torn_frame(
                read_message(&mut Cursor::new(&encoded[..cut])),
                &format!(
                    "{} cut after {cut} of {} bytes",
                    message.kind(),
                    encoded.len()
                ),
            );
        }
        // A body cut short but framed correctly: the decoder finds the missing field.
        let body = &encoded[4..];
        for cut in [0].into_iter().chain(cut_points(body.len())) {
            // A refusal cut just before its code byte is a whole refusal of code `Other`.
            let coded = refusal_code(&message).is_some_and(|code| code != Refusal::Other);
            if coded && cut == body.len() - 1 {
                continue;
            }
            let what = format!(
                "{} body cut to {cut} of {} bytes",
                message.kind(),
                body.len()
            );
            assert_protocol_error(Message::decode(&body[..cut]), &what);
            assert_protocol_error(read_message(&mut Cursor::new(frame(&body[..cut]))), &what);
        }
    }
}

/// A reader that fails with a socket error after handing out `good` bytes.
struct Broken {
    data: Vec<u8>,
    good: usize,
}

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let n = buf.len().min(self.good).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn socket_errors_are_io_errors_not_protocol_errors() {
    let encoded = Message::Ack { seq: 1 }.encode();
    for good in [0, 2, 4, 6] {
        let mut reader = Broken {
            data: encoded.clone(),
            good,
        };
        match read_message(&mut reader) {
            Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("after {good} bytes: expected an I/O error, got {other:?}"),
        }
    }
}
