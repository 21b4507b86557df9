//! Writes N bans of distinct IPv4 addresses into the ban sets of a kind, in rounds, and prints
//! the rate: the kernel side of scripts/bench-bans, without a flood. Needs CAP_NET_ADMIN and the
//! sets (`geofence rules`); run it in a throw-away network namespace.
//!
//!   cargo run --release -p geofence-nfq --example ban_rate -- ipset|nft COUNT [ROUND]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use geofence_core::ban::{Ban, SetKind};
use geofence_core::IpNetwork;
use geofence_nfq::bans::BanSets;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let kind = if args.get(1).map(String::as_str) == Some("nft") { SetKind::Nft } else { SetKind::Ipset };
    let count: u32 = args.get(2).map_or(Ok(100_000), |n| n.parse())?;
    let round: usize = args.get(3).map_or(Ok(1024), |n| n.parse())?;
    let bans: Vec<Ban> = (0..count)
        .map(|n| {
            let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n.wrapping_mul(2_654_435_761) % 0x00ff_ffff));
            Ban { network: IpNetwork::from(address), duration_ms: 3_600_000, offences: 1 }
        })
        .collect();
    let mut sets = BanSets::open(kind)?;
    let started = Instant::now();
    let mut refused = 0;
    for chunk in bans.chunks(round) {
        refused += sets.ban(chunk).iter().filter(|result| result.is_err()).count();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{kind}: {count} bans in {seconds:.3} s: {:.0} a second, {refused} refused", f64::from(count) / seconds);
    Ok(())
}
