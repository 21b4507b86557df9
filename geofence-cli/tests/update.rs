//! `geofence update` against a local HTTP server on loopback: what is fetched, what is refused,
//! and that a refused download leaves the old file in place. No root needed.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::http::{HttpServer, Reply};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `count` ranges of a range CSV, a /24 each from 10.0.0.0, GB and DE in turn (so that no two
/// merge into one).
fn countries(count: usize) -> Vec<u8> {
    let line = |n: usize| {
        let (high, low, country) = (n / 256, n % 256, if n.is_multiple_of(2) { "GB" } else { "DE" });
        format!("10.{high}.{low}.0,10.{high}.{low}.255,{country}\n")
    };
    (0..count).map(line).collect::<String>().into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A folder with a config whose database and feed `[update]` fetches from `server`, the
/// database holding 20 ranges and the feed 2 networks.
fn setup(server: &HttpServer, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("countries.csv"), countries(20)).unwrap();
    std::fs::write(dir.path().join("voipbl.txt"), "192.0.2.66\n198.51.100.0/24\n").unwrap();
    let config = dir.path().join("geofence.toml");
    let body = format!(
        "default = \"accept\"\ndatabase = \"countries.csv\"\n[feeds]\nvoipbl = {{ files = [\"voipbl.txt\"] }}\n\
         [update]\ntimeout = \"2s\"\n{extra}\n[[update.source]]\nurl = \"{}\"\nfile = \"countries.csv\"\n\
         [[update.source]]\nurl = \"{}\"\nfile = \"voipbl.txt\"\n",
        server.url("/countries.csv.gz"),
        server.url("/voipbl.txt")
    );
    std::fs::write(&config, body).unwrap();
    (dir, config)
}

fn update(config: &Path, extra: &[&str]) -> Output {
    let socket = config.with_file_name("nobody-listens.sock");
    std::process::Command::new(env!("CARGO_BIN_EXE_geofence"))
        .args(["update", "--config"])
        .arg(config)
        .arg("--control")
        .arg(socket)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .unwrap()
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn a_fresh_file_is_fetched_checked_and_swapped_in_and_a_304_changes_nothing() {
    let server = HttpServer::start();
    server.serve("/countries.csv.gz", Reply::Body { bytes: gzip(&countries(30)), etag: "\"m12\"" });
    server.serve(
        "/voipbl.txt",
        Reply::Body { bytes: b"192.0.2.66\n198.51.100.0/24\n203.0.113.9\n".to_vec(), etag: "\"v1\"" },
    );
    let (dir, config) = setup(&server, "");

    let checked = update(&config, &["--check"]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains("would be replaced: 20 → 30 ranges"), "{}", text(&checked.stdout));
    assert_eq!(read(dir.path(), "countries.csv"), countries(20), "--check changes nothing");
    assert!(!dir.path().join("countries.csv.previous").exists());

    let fetched = update(&config, &[]);
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    let said = text(&fetched.stdout);
    assert!(said.contains("replaced: 20 → 30 ranges"), "{said}");
    assert!(said.contains("replaced: 2 → 3 networks"), "{said}");
    assert!(said.contains(": it reads the new files when it starts"), "{said}");
    assert_eq!(read(dir.path(), "countries.csv"), countries(30), "stored decompressed, as the daemon reads it");
    assert_eq!(read(dir.path(), "countries.csv.previous"), countries(20), "the previous copy is kept");

    let again = update(&config, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout).matches("not modified since the last fetch (HTTP 304").count(),
        2,
        "{}",
        text(&again.stdout)
    );
    let conditional = server.seen().into_iter().rfind(|seen| seen.url == "/countries.csv.gz").unwrap();
    assert_eq!(conditional.header("If-None-Match"), Some("\"m12\""));
    assert_eq!(read(dir.path(), "countries.csv.previous"), countries(20), "a 304 replaces nothing");
}

#[test]
fn a_bad_download_leaves_the_old_file_in_place_says_why_and_fails() {
    let cases: Vec<(&str, Reply, &str)> = vec![
        ("a 404", Reply::Status(404), "countries.csv.gz: HTTP 404 Not Found"),
        ("a truncated gzip file", Reply::Body { bytes: gzip(&countries(3000))[..2000].to_vec(), etag: "\"t\"" }, "not a whole gzip file"),
        ("a wrong format", Reply::Body { bytes: b"<html><body>Moved</body></html>\n".to_vec(), etag: "\"h\"" }, "not a country database: http://127.0.0.1:"),
        ("a file that shrank by 90 %", Reply::Body { bytes: gzip(&countries(2)), etag: "\"s\"" }, "the new country database holds 2 ranges, less than half the 20 of the file it would replace: cut short? (--force, or database_may_shrink = true in [policy], accepts it)"),
        ("a server that stalls", Reply::Stall, "countries.csv.gz: no answer within the [update] timeout of 2s"),
    ];
    let cut = support::http::cut_short(gzip(&countries(30)));
    let cases = cases.into_iter().map(|(case, reply, message)| (case, Some(reply), message.to_owned()));
    let truncated = ("a truncated body", None, format!("{cut}: the download was cut short: "));
    for (case, reply, message) in cases.chain([truncated]) {
        let server = HttpServer::start();
        server.serve(
            "/voipbl.txt",
            Reply::Body { bytes: b"192.0.2.66\n198.51.100.0/24\n203.0.113.9\n".to_vec(), etag: "\"v\"" },
        );
        let (dir, config) = setup(&server, "");
        match reply {
            Some(reply) => server.serve("/countries.csv.gz", reply),
            None => {
                let pointed = std::fs::read_to_string(&config).unwrap().replace(&server.url("/countries.csv.gz"), &cut);
                std::fs::write(&config, pointed).unwrap();
            }
        }
        let started = std::time::Instant::now();
        let output = update(&config, &[]);
        let said = text(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{case}: {said}{}", text(&output.stderr));
        assert!(said.contains("failed, the file stays as it was: ") && said.contains(&message), "{case}: {said}");
        assert_eq!(read(dir.path(), "countries.csv"), countries(20), "{case}: the old data stays");
        assert!(!dir.path().join("countries.csv.previous").exists(), "{case}");
        assert!(said.contains("replaced: 2 → 3 networks"), "{case}: the other source still updates: {said}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{case}: within the 2 s timeout and a reload");
    }
}

#[test]
fn a_shrunken_file_is_taken_with_force_and_a_monthly_url_falls_back_to_last_month() {
    let server = HttpServer::start();
    server.serve("/countries.csv.gz", Reply::Body { bytes: gzip(&countries(2)), etag: "\"s\"" });
    server.serve("/voipbl.txt", Reply::Status(500));
    let (dir, config) = setup(&server, "");
    let forced = update(&config, &["--force"]);
    assert!(text(&forced.stdout).contains("replaced: 20 → 2 ranges"), "{}", text(&forced.stdout));
    assert!(text(&forced.stdout).contains("voipbl.txt: HTTP 500 Internal Server Error"), "{}", text(&forced.stdout));
    assert_eq!(forced.status.code(), Some(1), "one source failed");
    assert_eq!(read(dir.path(), "countries.csv"), countries(2));

    let (year, month) = this_and_last_month();
    let monthly = std::fs::read_to_string(&config)
        .unwrap()
        .replace("/countries.csv.gz", "/dbip-country-lite-{year}-{month}.csv.gz");
    std::fs::write(&config, monthly).unwrap();
    server.serve(
        &format!("/dbip-country-lite-{}.csv.gz", month),
        Reply::Body { bytes: gzip(&countries(4)), etag: "\"m\"" },
    );
    let fallback = update(&config, &[]);
    let said = text(&fallback.stdout);
    assert!(said.contains(&format!("from {}", server.url(&format!("/dbip-country-lite-{month}.csv.gz")))), "{said}");
    assert!(said.contains("replaced: 2 → 4 ranges"), "{said}");
    assert!(
        server.seen().iter().any(|seen| seen.url == format!("/dbip-country-lite-{year}.csv.gz")),
        "this month was asked first"
    );
}

#[test]
fn database_may_shrink_lets_a_database_shrink_as_a_reload_would() {
    let server = HttpServer::start();
    server.serve("/countries.csv.gz", Reply::Body { bytes: gzip(&countries(2)), etag: "\"s\"" });
    server.serve("/voipbl.txt", Reply::Status(304));
    let (dir, config) = setup(&server, "");
    let allowed =
        std::fs::read_to_string(&config).unwrap().replacen("database =", "database_may_shrink = true\ndatabase =", 1);
    std::fs::write(&config, allowed).unwrap();
    let output = update(&config, &[]);
    assert!(text(&output.stdout).contains("replaced: 20 → 2 ranges"), "{}", text(&output.stdout));
    assert_eq!(read(dir.path(), "countries.csv"), countries(2));
}

#[test]
fn a_file_that_cannot_be_written_fails_alone_and_the_others_are_still_replaced_and_reloaded() {
    let server = HttpServer::start();
    server.serve("/countries.csv.gz", Reply::Body { bytes: gzip(&countries(30)), etag: "\"c\"" });
    server.serve(
        "/voipbl.txt",
        Reply::Body { bytes: b"192.0.2.66\n198.51.100.0/24\n203.0.113.9\n".to_vec(), etag: "\"v\"" },
    );
    let (dir, config) = setup(&server, "");
    // A folder where the previous copy goes: it cannot be removed to make room, even by root.
    std::fs::create_dir_all(dir.path().join("countries.csv.previous/in-the-way")).unwrap();
    let output = update(&config, &[]);
    let said = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{said}{}", text(&output.stderr));
    assert!(said.contains("failed, the file stays as it was: cannot write "), "{said}");
    assert_eq!(read(dir.path(), "countries.csv"), countries(20));
    assert!(said.contains("replaced: 2 → 3 networks"), "the next source is still updated: {said}");
    assert!(said.contains("no geofence answers on "), "and the reload is still asked for: {said}");
}

/// This month and the one before as DB-IP names them: 2026-12, 2026-11.
fn this_and_last_month() -> (String, String) {
    let output = std::process::Command::new("date").args(["-u", "+%Y %m"]).output().unwrap();
    let now = text(&output.stdout);
    let (year, month) = now.trim().split_once(' ').unwrap();
    let (year, month): (i32, u32) = (year.parse().unwrap(), month.parse().unwrap());
    let (last_year, last_month) = if month == 1 { (year - 1, 12) } else { (year, month - 1) };
    (format!("{year}-{month:02}"), format!("{last_year}-{last_month:02}"))
}

#[test]
fn a_geoip_conf_is_honoured_as_geoipupdate_reads_it() {
    let server = HttpServer::start();
    let mmdb = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/mmdb/small.mmdb")).unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("GeoLite2-Country_20261201/COPYRIGHT.txt", &b"(c) MaxMind"[..]),
        ("GeoLite2-Country_20261201/GeoLite2-Country.mmdb", &mmdb),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes).unwrap();
    }
    let tarball = gzip(&archive.into_inner().unwrap());
    let md5 = text(
        &std::process::Command::new("md5sum")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/mmdb/small.mmdb"))
            .output()
            .unwrap()
            .stdout,
    );
    let md5 = md5.split_whitespace().next().unwrap().to_owned();
    server.serve(
        "/geoip/updates/metadata?edition_id=GeoLite2-Country",
        Reply::Body {
            bytes: format!(
                "{{\"databases\":[{{\"edition_id\":\"GeoLite2-Country\",\"date\":\"2026-12-01\",\"md5\":\"{md5}\"}}]}}"
            )
            .into_bytes(),
            etag: "\"meta\"",
        },
    );
    server.serve(
        "/geoip/databases/GeoLite2-Country/download?date=20261201&suffix=tar.gz",
        Reply::Body { bytes: tarball, etag: "\"db\"" },
    );

    let dir = tempfile::tempdir().unwrap();
    let geoip = dir.path().join("GeoIP");
    std::fs::create_dir(&geoip).unwrap();
    std::fs::write(
        dir.path().join("GeoIP.conf"),
        format!("# as MaxMind hands it out\nAccountID 123456\nLicenseKey s3cret\nEditionIDs GeoLite2-Country GeoLite2-City\nDatabaseDirectory {}\nHost {}\n", geoip.display(), server.host()),
    )
    .unwrap();
    let config = dir.path().join("geofence.toml");
    std::fs::write(
        &config,
        "default = \"accept\"\ndatabase = \"GeoIP/GeoLite2-Country.mmdb\"\n[update]\ngeoip_conf = \"GeoIP.conf\"\n",
    )
    .unwrap();

    let fetched = update(&config, &[]);
    let said = text(&fetched.stdout);
    assert!(
        said.contains("country database ") && said.contains("from MaxMind GeoLite2-Country of 2026-12-01"),
        "{said}"
    );
    assert!(said.contains("replaced: 2 ranges"), "{said}");
    assert!(
        said.contains("GeoLite2-City.mmdb\n  failed, the file stays as it was: ")
            && said.contains("is not a file this config reads"),
        "{said}"
    );
    assert_eq!(fetched.status.code(), Some(1), "the edition the config does not read is reported");
    assert_eq!(std::fs::read(geoip.join("GeoLite2-Country.mmdb")).unwrap(), mmdb, "the database out of the archive");
    let asked = server.seen().into_iter().find(|seen| seen.url.starts_with("/geoip/updates/metadata")).unwrap();
    assert_eq!(asked.header("Authorization"), Some("Basic MTIzNDU2OnMzY3JldA=="), "123456:s3cret");

    let again = update(&config, &[]);
    assert!(
        text(&again.stdout).contains("GeoLite2-Country is up to date (its MD5 is MaxMind's latest)"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(server.seen().iter().filter(|seen| seen.url.contains("/download")).count(), 1, "not downloaded again");
}

#[test]
fn with_no_update_table_nothing_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("geofence.toml");
    std::fs::write(&config, "default = \"accept\"\n").unwrap();
    let output = update(&config, &[]);
    assert!(output.status.success());
    assert!(text(&output.stdout)
        .ends_with("has no [update] table: nothing is fetched, and the files it names serve as they are\n"));
}

#[test]
fn apiban_is_read_page_by_page_and_the_next_update_goes_on_from_the_last_id() {
    let server = HttpServer::start();
    let page = |addresses: &[&str], id: &str| Reply::Body {
        bytes: format!("{{\"ipaddress\": {addresses:?}, \"ID\": \"{id}\"}}").into_bytes(),
        etag: "\"p\"",
    };
    let none = || Reply::Answer(400, br#"{"ipaddress": ["no new bans"], "ID": "none"}"#.to_vec());
    server.serve("/api/KEY123/banned", page(&["192.0.2.66", "198.51.100.7"], "1001"));
    server.serve("/api/KEY123/banned/1001", page(&["203.0.113.9"], "1002"));
    server.serve("/api/KEY123/banned/1002", none());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("geofence.toml");
    std::fs::write(
        &config,
        format!(
            "default = \"accept\"\n[feeds]\napiban = {{ files = [\"apiban.json\"] }}\n[[update.source]]\n\
             url = \"{}\"\nfile = \"apiban.json\"\napi = \"apiban\"\n",
            server.url("/api/KEY123/banned")
        ),
    )
    .unwrap();

    let first = update(&config, &[]);
    let said = text(&first.stdout);
    assert!(first.status.success(), "{said}{}", text(&first.stderr));
    assert!(said.contains("/api/…/banned, afresh: 3 pages, 3 addresses"), "{said}");
    assert!(said.contains("replaced: 3 networks (APIBAN JSON)"), "{said}");
    assert!(!said.contains("KEY123"), "the key stays out of the output: {said}");
    let file: serde_json::Value = serde_json::from_slice(&read(dir.path(), "apiban.json")).unwrap();
    assert_eq!(file["ID"], "1002");

    server.serve("/api/KEY123/banned/1002", page(&["192.0.2.99"], "1003"));
    server.serve("/api/KEY123/banned/1003", none());
    let second = update(&config, &[]);
    let said = text(&second.stdout);
    assert!(
        said.contains("on from the file's ID: 2 pages, 1 addresses") && said.contains("replaced: 3 → 4 networks"),
        "{said}"
    );
    let asked: Vec<String> = server.seen().into_iter().map(|seen| seen.url).collect();
    assert_eq!(
        asked.iter().filter(|url| url.as_str() == "/api/KEY123/banned").count(),
        1,
        "not from the start again: {asked:?}"
    );

    let third = update(&config, &[]);
    assert!(text(&third.stdout).contains("APIBAN has no newer bans"), "{}", text(&third.stdout));

    server.serve("/api/KEY123/banned/1003", Reply::Status(429));
    let limited = update(&config, &[]);
    assert_eq!(limited.status.code(), Some(1));
    assert!(
        text(&limited.stdout).contains("/api/…/banned/1003: rate limited (HTTP 429); the file stays"),
        "{}",
        text(&limited.stdout)
    );
    let file: serde_json::Value = serde_json::from_slice(&read(dir.path(), "apiban.json")).unwrap();
    assert_eq!((file["ID"].as_str(), file["ipaddress"].as_array().map(Vec::len)), (Some("1003"), Some(4)));
}
