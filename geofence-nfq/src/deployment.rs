//! The kernel side of a config's deployment settings, derived in one place: the queues'
//! settings, the options of the firewall rules that feed them, and the flow-mark contract
//! between the verdicts and those rules. Deriving all three from the same [`Deployment`] here
//! keeps them from disagreeing (a queue bound fail-closed behind rules printed with
//! `--queue-bypass`, or verdicts carrying a mark the rules do not save).

use geofence_core::config::Deployment;
use geofence_core::Verdict;

use crate::rules::RuleOptions;
use crate::QueueConfig;

/// The copy range of a policy that reads payloads: a whole datagram, so that no IPv6
/// extension header pushes a SIP request out of the copied bytes.
pub const WHOLE_DATAGRAM: u16 = u16::MAX;

/// The settings of each queue a deployment binds, first to last, for a policy that reads each
/// datagram's payload when `reads_payload` (then the kernel copies whole datagrams unless the
/// deployment sets a copy range).
pub fn queue_configs(deployment: &Deployment, reads_payload: bool) -> Vec<QueueConfig> {
    let (first, last) = deployment.queues;
    (first..=last)
        .map(|number| {
            let mut queue = QueueConfig::new(number);
            queue.fail_open = deployment.fail_open;
            queue.fallback = if deployment.fail_open { Verdict::Accept } else { Verdict::Drop };
            if let Some(length) = deployment.queue_length {
                queue.max_len = length;
            }
            match deployment.copy_range {
                Some(range) => queue.copy_range = range,
                None if reads_payload => queue.copy_range = WHOLE_DATAGRAM,
                None => {}
            }
            queue
        })
        .collect()
}

/// The options of the firewall rules that feed a deployment's queues, for a policy whose
/// verdict on packets it cannot parse is `malformed` (which INVALID packets get too).
pub fn rule_options(deployment: &Deployment, malformed: Verdict) -> RuleOptions {
    RuleOptions {
        drop_invalid: malformed == Verdict::Drop,
        queues: deployment.queues,
        bypass: deployment.fail_open,
        hashlimit_rate: deployment.hashlimit_rate,
        hashlimit_burst: deployment.hashlimit_burst,
        flow_mark: deployment.flow_mark,
        examined_mark: deployment.examined_mark,
        every_packet: Vec::new(),
        bans: None,
        failure_answers: Vec::new(),
    }
}

/// The verdict to give the kernel: an accepted packet also carries the bits of `mark`. With
/// the flow mark, the rules [`rule_options`] prints save it to the connection, so the rest of
/// the flow stays in the kernel; with the examined mark, the packet alone is marked as decided.
/// A `mark` of 0 leaves verdicts as they are.
///
/// ```
/// use geofence_core::Verdict;
/// use geofence_nfq::deployment::with_mark;
/// assert_eq!(with_mark(Verdict::Accept, 0x4000_0000), Verdict::AcceptWithMark(0x4000_0000));
/// assert_eq!(with_mark(Verdict::AcceptWithMark(0x10), 0x4000_0000), Verdict::AcceptWithMark(0x4000_0010));
/// assert_eq!(with_mark(Verdict::Drop, 0x4000_0000), Verdict::Drop);
/// ```
pub fn with_mark(verdict: Verdict, mark: u32) -> Verdict {
    match verdict {
        Verdict::Accept if mark != 0 => Verdict::AcceptWithMark(mark),
        Verdict::AcceptWithMark(given) => Verdict::AcceptWithMark(given | mark),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_and_rules_agree_on_fail_open_and_the_range() {
        let config = geofence_core::Config::parse(
            "queue = \"2-3\"\nfail_open = true\nqueue_length = 64\ncopy_range = 1500\ndefault = \"drop\"\n",
        )
        .unwrap();
        let queues = queue_configs(&config.deployment, false);
        assert_eq!(
            queues.iter().map(|q| (q.queue, q.fail_open, q.max_len, q.copy_range)).collect::<Vec<_>>(),
            [(2, true, 64, 1500), (3, true, 64, 1500)]
        );
        assert!(queues.iter().all(|q| q.fallback == Verdict::Accept));
        let sip = geofence_core::Config::parse("default = \"drop\"\n").unwrap();
        assert_eq!(queue_configs(&sip.deployment, true)[0].copy_range, WHOLE_DATAGRAM);
        assert_eq!(queue_configs(&sip.deployment, false)[0].copy_range, 256);
        assert_eq!(queue_configs(&config.deployment, true)[0].copy_range, 1500, "a copy range set is kept");
        let options = rule_options(&config.deployment, Verdict::Drop);
        assert_eq!((options.queues, options.bypass, options.flow_mark), ((2, 3), true, 0x4000_0000));
    }

    #[test]
    fn accepted_packets_carry_the_flow_mark() {
        assert_eq!(with_mark(Verdict::Accept, 0), Verdict::Accept);
        assert_eq!(with_mark(Verdict::AcceptWithMark(0x10), 0), Verdict::AcceptWithMark(0x10));
    }
}
