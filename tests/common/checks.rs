//! Checking what clients received: ending them all, and comparing the seqs of the messages
//! they printed with what was sent, in failure messages that summarise the sequence.

use serde_json::Value;

use super::TIMEOUT;
use super::client::Client;

/// Ends every client (stdin closed, all at once) and asserts that each exits 0, which
/// means everything it sent was acknowledged. Afterwards each client's event log is whole.
pub fn finish_all(clients: &mut [Client]) {
    for client in clients.iter_mut() {
        client.close_stdin();
    }
    for client in clients.iter_mut() {
        let status = client.finish(TIMEOUT);
        assert!(
            status.success(),
            "client {} should exit 0 once all it sent is acknowledged, got {status}; \
             stderr:\n{}",
            client.name,
            client.proc.stderr_report()
        );
    }
}

/// The `seq` of every `message` and `file` event from `from` in `events`, in order.
pub fn message_seqs(events: &[Value], from: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| (e["event"] == "message" || e["event"] == "file") && e["from"] == from)
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

/// The events of kind `kind` (`"failover"`, `"gap"`, ...) in `events`.
pub fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// A short description of a list of seqs for failure messages: how many, the first and
/// last, and every place where a seq does not follow its predecessor by one.
pub fn describe_seqs(seqs: &[u64]) -> String {
    let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
        return "none".to_string();
    };
    let breaks: Vec<String> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .take(20)
        .map(|w| format!("{}->{}", w[0], w[1]))
        .collect();
    format!(
        "{} messages, first {first}, last {last}, breaks in the sequence: [{}]",
        seqs.len(),
        breaks.join(", ")
    )
}

/// Asserts that `receiver`'s `events` hold from `sender` exactly the seqs `first..=last`,
/// each once, in order: nothing lost, nothing duplicated, nothing reordered.
pub fn assert_seqs_exactly(events: &[Value], receiver: &str, sender: &str, first: u64, last: u64) {
    let seqs = message_seqs(events, sender);
    let expected: Vec<u64> = (first..=last).collect();
    assert!(
        seqs == expected,
        "{receiver} should have received seqs {first}..={last} from {sender} exactly once, \
         in order; it got {}",
        describe_seqs(&seqs)
    );
}

/// Asserts that `receiver`'s `events` hold from `sender` exactly the texts
/// `"{sender} n1"` ... `"{sender} n{total}"`, in that order: the numbered lines that
/// `tests/failover.rs` and [`Chatter`](super::Chatter) write.
pub fn assert_numbered_texts(events: &[Value], receiver: &str, sender: &str, total: u64) {
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "message" && e["from"] == sender)
        .filter_map(|e| e["text"].as_str())
        .collect();
    let expected: Vec<String> = (1..=total).map(|k| format!("{sender} n{k}")).collect();
    assert!(
        texts == expected,
        "{receiver} got other texts from {sender} than n1..n{total} in order"
    );
}

/// Ends `receiver` (it must exit with 0), then checks that it got exactly seqs 1 to `last`
/// from `sender`, in order, and reported no `gap`: nothing lost and nothing hidden.
pub fn finish_and_assert_all_from(receiver: &mut Client, sender: &str, last: u64) {
    let status = receiver.finish(TIMEOUT);
    assert!(status.success(), "{} exited with {status}", receiver.name);
    let events = receiver.events_so_far();
    assert_seqs_exactly(&events, &receiver.name, sender, 1, last);
    assert!(
        events_of(&events, "gap").is_empty(),
        "{} reported a gap: {events:?}",
        receiver.name
    );
}
