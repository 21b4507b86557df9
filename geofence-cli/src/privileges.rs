//! After the queues are bound, geofence keeps only CAP_NET_ADMIN (verdicts need it): a flaw in
//! packet handling then cannot be used for anything else root could do.

use caps::{CapSet, Capability, CapsHashSet};

/// Drops every capability but CAP_NET_ADMIN from the bounding, permitted, effective and
/// inheritable sets of this thread, before any other thread starts (threads inherit them).
pub fn keep_only_net_admin() {
    let keep: CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for capability in caps::all().into_iter().filter(|c| *c != Capability::CAP_NET_ADMIN) {
            if let Err(error) = caps::drop(None, CapSet::Bounding, capability) {
                log::warn!("cannot drop {capability} from the bounding set: {error}");
            }
        }
    }
    let result = caps::clear(None, CapSet::Inheritable)
        .and_then(|()| caps::set(None, CapSet::Effective, &keep))
        .and_then(|()| caps::set(None, CapSet::Permitted, &keep));
    match result {
        Ok(()) => log::info!("queues bound; kept only CAP_NET_ADMIN"),
        Err(error) => log::warn!("cannot drop capabilities other than CAP_NET_ADMIN: {error}"),
    }
}
