//! The name rule: which client names dsys accepts. The server applies it to every name that
//! registers (with its own `--max-name-len`), the coordinator to the names it is asked to
//! locate or claim, and the client to its own name before it tries, at the most lenient
//! limit ([`MAX_NAME_LEN_LIMIT`]). A pure function, no I/O.

/// The highest `--max-name-len`, and what a client checks its own name against before it
/// registers: plenty for a name, and far below the 64 KiB a string on the wire may hold.
pub const MAX_NAME_LEN_LIMIT: usize = 255;

/// The name rule: 1 to `max_len` characters from `A-Z a-z 0-9 - _ .`, not starting with a
/// dot. Names appear in logs, file names and terminals, so the alphabet is small.
///
/// # Errors
/// The reason, as a sentence for the client.
pub fn valid_name(name: &str, max_len: usize) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > max_len {
        return Err(format!("name must be 1 to {max_len} characters"));
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "name {name:?} is invalid: use letters, digits, '-', '_' and '.' (not first)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_alphabet_or_too_long_are_refused() {
        let max = 32; // the server's default `--max-name-len`
        assert!(valid_name("alice", max).is_ok());
        assert!(valid_name("bob-2_x.y", max).is_ok());
        assert!(valid_name(&"x".repeat(max), max).is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(max + 1)] {
            assert!(valid_name(bad, max).is_err(), "{bad:?} should be refused");
        }
    }
}
