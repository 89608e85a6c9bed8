//! The wechat-template plugin against the fake WeChat API: the template
//! message body checked field by field with Chinese text byte-exact, the
//! access token fetched once and reused across sends, re-fetched after it
//! expires in virtual time and refreshed once within a send on 40001, each
//! errcode mapped onto its outcome in `herald deliveries` (43004 suppressed
//! with fallback to `inbox`, 45009 retried after the daily reset, 40003
//! failed, 40125 failed naming the settings), the app secret and access
//! tokens never printed, and signed `TEMPLATESENDJOBFINISH` pushes turned
//! into delivery reports.

use crate::fakes::wechat::{access_token_of, job_finish_xml, push_query, FakeWechat};
use crate::support::*;
use serde_json::{json, Value};
use std::path::PathBuf;

const APP_ID: &str = "wx8f3a2b1c0d9e7f65";
const APP_SECRET: &str = "5c1d9e0f7a3b4c2d8e6f0a1b2c3d4e5f";
const TEMPLATE: &str = "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY";
const CALLBACK_TOKEN: &str = "herald-push-token-7a1c";
const SUBJECT: &str = "【Acme】您的试用将于4天后结束";

fn config(scratch: &Scratch, fake: &FakeWechat, secret: &str) -> PathBuf {
    let secret_file = scratch.write("wechat.secret", secret);
    Config::new()
        // One send at a time: the token cache is then exact. (With sends in
        // parallel the plugin's single-flight token fetch is best-effort, as
        // its README says: the host's key-value store has no compare-and-set.)
        .set("scheduler", "concurrency", 1)
        .retry(3, "10m", "1h")
        .channel(
            "wechat",
            Channel::plugin("wechat-template")
                .allow(&fake.origin())
                .set("timeout", "5s")
                .setting("app_id", APP_ID)
                .setting("app_secret", file(&secret_file))
                .setting("template_id", TEMPLATE)
                .setting("api_base", fake.origin())
                .setting("url", "https://acme.example/billing")
                .setting("callback_token", CALLBACK_TOKEN),
        )
        .inbox()
        .rule(
            Rule::new(
                "trial-ending",
                ON_CREATED,
                &["wechat", "inbox"],
                SUBJECT,
                "{{ customer.name }}，您好：您的试用将于4天后结束。",
            )
            .set(
                "fields",
                Raw(format!(
                    r#"{{ first = "{SUBJECT}", keyword1 = "{{{{ customer.name }}}}", keyword2 = "2026-03-05", remark = "点击续费，保留您的数据" }}"#
                )),
            ),
        )
        .write(scratch)
}

fn customer(at: &str, id: &str, name: &str, openid: &str) -> String {
    json!({"at": at, "op": "upsert", "customer": {"external_id": id, "name": name, "wechat_openid": openid}})
        .to_string()
        + "\n"
}

/// "token" for a token fetch, the openid for a template send.
fn kind(r: &Received) -> String {
    if r.path.starts_with("/cgi-bin/token") {
        "token".into()
    } else {
        r.json()["touser"].as_str().unwrap_or("?").to_string()
    }
}

#[test]
fn wechat_sends_templates_caches_the_token_and_maps_errcodes() {
    let fake = FakeWechat::start(APP_ID, APP_SECRET, &[TEMPLATE]);
    let scratch = Scratch::new();
    let config = config(&scratch, &fake, APP_SECRET);
    let nine = "2026-03-01T09:00:00Z";
    let timeline = [
        customer(nine, "lilei", "李雷", "oLiLei-9f8e7d6c5b4a"),
        customer(nine, "hanmeimei", "韩梅梅", "oHanMeimei-1a2b3c"),
        customer(nine, "gone", "Gone", "unfollowed-1"),
        customer(nine, "busy", "Busy", "quota-1"),
        customer(nine, "wrong", "Wrong", "invalid-1"),
        // 2.5 h later: the cached token (7200 s, kept 6900 s) has expired.
        customer("2026-03-01T11:30:00Z", "late", "Late", "oLate-2"),
    ]
    .concat();
    let timeline = scratch.write("t.jsonl", &timeline);
    let db = scratch.path("h.db");
    let out = simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));

    // One token for the five sends at 09:00, a new one at 11:30 and another
    // for the 45009 retry after midnight Beijing time.
    let requests = fake.requests();
    let kinds: Vec<String> = requests.iter().map(kind).collect();
    assert_eq!(kinds.len(), 10, "{kinds:?}");
    assert_eq!(kinds[0], "token", "{kinds:?}");
    let mut first_batch = kinds[1..6].to_vec();
    first_batch.sort();
    assert_eq!(
        first_batch,
        [
            "invalid-1",
            "oHanMeimei-1a2b3c",
            "oLiLei-9f8e7d6c5b4a",
            "quota-1",
            "unfollowed-1"
        ],
        "{kinds:?}"
    );
    assert_eq!(
        kinds[6..],
        ["token", "oLate-2", "token", "quota-1"],
        "{kinds:?}"
    );
    assert_eq!(fake.token_fetches(), 3);
    let tokens: Vec<String> = fake.sends().iter().map(access_token_of).collect();
    assert!(
        tokens[..5].iter().all(|t| *t == tokens[0]),
        "one cached token: {tokens:?}"
    );
    assert_ne!(tokens[5], tokens[0]);
    assert_ne!(tokens[6], tokens[5]);

    // The token request and the full template message for 李雷.
    let token_req = &requests[0];
    assert_eq!(token_req.method, "GET");
    assert_eq!(
        token_req.path,
        format!("/cgi-bin/token?grant_type=client_credential&appid={APP_ID}&secret={APP_SECRET}")
    );
    let send = requests
        .iter()
        .find(|r| kind(r) == "oLiLei-9f8e7d6c5b4a")
        .unwrap();
    assert_eq!(send.method, "POST");
    assert!(send
        .path
        .starts_with("/cgi-bin/message/template/send?access_token="));
    assert!(send
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(
        send.json(),
        json!({
            "touser": "oLiLei-9f8e7d6c5b4a",
            "template_id": TEMPLATE,
            "url": "https://acme.example/billing",
            "data": {
                "first": {"value": SUBJECT},
                "keyword1": {"value": "李雷"},
                "keyword2": {"value": "2026-03-05"},
                "remark": {"value": "点击续费，保留您的数据"}
            }
        })
    );
    let raw = std::str::from_utf8(&send.body).expect("UTF-8 body");
    for s in [SUBJECT, "{\"value\":\"李雷\"}", "点击续费，保留您的数据"] {
        assert!(raw.contains(s), "{s} not byte-exact in {raw}");
    }

    // Outcomes.
    let rows = deliveries(&config, &db);
    let one = |c: &str| only_row(&rows, c);
    let ok = one("lilei");
    assert_eq!(ok["status"], "delivered");
    assert_eq!(ok["channel"], "wechat");
    assert_eq!(ok["provider"], "wechat-template");
    assert!(
        ok["provider_message_id"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 200_228_332
    );
    assert_eq!(one("hanmeimei")["status"], "delivered");
    assert_eq!(one("late")["status"], "delivered");

    let gone = customer_rows(&rows, "gone");
    assert_eq!(gone.len(), 2, "suppressed, then the inbox: {gone:?}");
    assert_eq!(gone[0]["status"], "suppressed");
    assert_eq!(gone[0]["channel"], "wechat");
    assert!(
        gone[0]["error"].as_str().unwrap().contains("43004"),
        "{}",
        gone[0]
    );
    assert_eq!(gone[1]["status"], "delivered");
    assert_eq!(gone[1]["channel"], "inbox");

    let wrong = one("wrong");
    assert_eq!(wrong["status"], "failed", "40003 is not retried: {wrong}");
    assert!(wrong["retry_at"].is_null());
    let err = wrong["error"].as_str().unwrap();
    assert!(
        err.contains("40003") && err.contains("wechat_openid"),
        "{err}"
    );

    let busy = customer_rows(&rows, "busy");
    assert_eq!(busy.len(), 2, "{busy:?}");
    assert_eq!(busy[0]["status"], "failed");
    assert!(busy[0]["error"].as_str().unwrap().contains("45009"));
    // Retried just after 00:00 Beijing time (16:00 UTC), not after the 10 min backoff.
    let retry_at = busy[0]["retry_at"].as_str().unwrap();
    assert!(
        retry_at.starts_with("2026-03-01T16:0"),
        "45009 retry at {retry_at}"
    );
    assert_eq!(busy[1]["status"], "delivered");
    assert_eq!(busy[1]["attempt"], 2);

    // Neither the secret nor any access token is printed.
    let [table, table_err] = deliveries_table(&config, &db);
    let secrets: Vec<&str> = std::iter::once(APP_SECRET)
        .chain(tokens.iter().map(String::as_str))
        .collect();
    assert_not_leaked(
        &secrets,
        &[stdout, stderr, table, table_err, json!(rows).to_string()],
    );
}

#[test]
fn an_invalidated_token_is_refreshed_once_within_the_send() {
    let fake = FakeWechat::start(APP_ID, APP_SECRET, &[TEMPLATE]);
    let scratch = Scratch::new();
    let config = config(&scratch, &fake, APP_SECRET);
    let timeline = [
        customer("2026-03-01T09:00:00Z", "first", "First", "oFirst-1"),
        // Its first send finds every token invalidated (another server
        // fetched a new one): 40001, then a new token and the same message.
        customer("2026-03-01T09:30:00Z", "rotated", "轮换", "rotate-1"),
        customer("2026-03-01T10:00:00Z", "after", "After", "oAfter-1"),
    ]
    .concat();
    let timeline = scratch.write("t.jsonl", &timeline);
    let db = scratch.path("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);

    let kinds: Vec<String> = fake.requests().iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["token", "oFirst-1", "rotate-1", "token", "rotate-1", "oAfter-1"]
    );
    assert_eq!(fake.token_fetches(), 2);
    let sends = fake.sends();
    let tokens: Vec<String> = sends.iter().map(access_token_of).collect();
    assert_eq!(tokens[0], tokens[1], "the cached token was tried first");
    assert_ne!(tokens[1], tokens[2], "then a new one");
    assert_eq!(tokens[2], tokens[3], "and the new one is cached");
    assert_eq!(
        sends[1].body, sends[2].body,
        "the same message is sent again"
    );

    let rows = deliveries(&config, &db);
    let rotated = customer_rows(&rows, "rotated");
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["status"], "delivered");
    assert_eq!(rotated[0]["attempt"], 1);
    assert!(rows.iter().all(|r| r["status"] == "delivered"), "{rows:?}");
}

#[test]
fn a_wrong_app_secret_fails_permanently_and_is_never_printed() {
    let fake = FakeWechat::start(APP_ID, APP_SECRET, &[TEMPLATE]);
    let scratch = Scratch::new();
    let wrong = "0000ffff1111eeee2222dddd3333cccc";
    let config = config(&scratch, &fake, wrong);
    let timeline = scratch.write(
        "t.jsonl",
        &customer(
            "2026-03-01T09:00:00Z",
            "lilei",
            "李雷",
            "oLiLei-9f8e7d6c5b4a",
        ),
    );
    let db = scratch.path("h.db");
    let out = simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let rows = deliveries(&config, &db);
    let wechat: Vec<&Value> = rows.iter().filter(|r| r["channel"] == "wechat").collect();
    assert_eq!(wechat.len(), 1, "not retried: {rows:?}");
    assert_eq!(wechat[0]["status"], "failed");
    let err = wechat[0]["error"].as_str().unwrap();
    assert!(
        err.contains("40125") && err.contains("`app_secret`"),
        "{err}"
    );
    assert!(fake.sends().is_empty());
    assert_not_leaked(
        &[wrong],
        &[
            text(&out.stdout),
            text(&out.stderr),
            json!(rows).to_string(),
        ],
    );
}

/// POST an XML push to `url`; the HTTP status and body.
fn post_xml(url: &str, body: &str) -> (u16, String) {
    let answer = Request::post(url).body("text/xml", body).send();
    (answer.status, answer.text())
}

#[test]
fn signed_job_finish_pushes_become_reports() {
    let fake = FakeWechat::start(APP_ID, APP_SECRET, &[TEMPLATE]);
    let scratch = Scratch::new();
    let config = config(&scratch, &fake, APP_SECRET);
    let timeline = [
        customer(
            "2026-03-01T09:00:00Z",
            "lilei",
            "李雷",
            "oLiLei-9f8e7d6c5b4a",
        ),
        customer(
            "2026-03-01T09:00:00Z",
            "blocker",
            "Blocker",
            "oBlocker-5e6f",
        ),
    ]
    .concat();
    let timeline = scratch.write("t.jsonl", &timeline);
    let db = scratch.path("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let rows = deliveries(&config, &db);
    let msgid = |c: &str| {
        customer_rows(&rows, c)[0]["provider_message_id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let server = Server::start(&config, &db, &scratch, "serve.log");
    let hook = |query: &str| format!("{}/hooks/wechat?{query}", server.base);
    // `serve` runs on the wall clock: pushes are signed at its time.
    let now = wall_secs().to_string();
    let forged = push_query("not-the-token", &now, "1847326510");
    let ok_xml = job_finish_xml("oLiLei-9f8e7d6c5b4a", &msgid("lilei"), "success");
    assert_eq!(post_xml(&hook(&forged), &ok_xml).0, 403);
    assert!(deliveries(&config, &db)
        .iter()
        .all(|r| r["report"].is_null()));

    let good = push_query(CALLBACK_TOKEN, &now, "1847326510");
    let (status, body) = post_xml(&hook(&good), &ok_xml);
    assert_eq!(status, 200, "{}", server.log());
    assert!(body.contains("success"), "WeChat expects `success`: {body}");
    let blocked = job_finish_xml("oBlocker-5e6f", &msgid("blocker"), "failed:user block");
    let next = push_query(CALLBACK_TOKEN, &now, "1847326511");
    assert_eq!(post_xml(&hook(&next), &blocked).0, 200);

    let rows = wait_for(10, || {
        let rows = deliveries(&config, &db);
        rows.iter().all(|r| !r["report"].is_null()).then_some(rows)
    })
    .unwrap_or_else(|| panic!("no reports recorded; log: {}", server.log()));
    assert_eq!(customer_rows(&rows, "lilei")[0]["report"], "delivered");
    let b = customer_rows(&rows, "blocker")[0];
    assert_eq!(b["report"], "undelivered");
    assert_eq!(b["report_reason"], "user block");
    assert!(!server.log().contains(APP_SECRET));
}

/// Seconds since the Unix epoch on the wall clock `herald serve` runs on.
fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A follow (`subscribe`) or unfollow (`unsubscribe`) push from `openid`.
fn follow_xml(openid: &str, event: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
         <FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>1772357000</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[{event}]]></Event></xml>"
    )
}

/// A captured push replayed later would undo what came after it (here a
/// follow replayed after the customer unfollowed again would lift their
/// opt-out): the second copy of a signed push is refused, as is a push
/// signed outside the five-minute window around the server's clock.
#[test]
fn a_replayed_or_stale_push_is_refused() {
    let fake = FakeWechat::start(APP_ID, APP_SECRET, &[TEMPLATE]);
    let scratch = Scratch::new();
    let config = config(&scratch, &fake, APP_SECRET);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let openid = "oLiLei-9f8e7d6c5b4a";
    let body = json!({"external_id": "lilei", "name": "李雷", "wechat_openid": openid}).to_string();
    assert_eq!(server.api("POST", "/customers", Some(&body)).0, 200);
    let hook = |query: &str| format!("{}/hooks/wechat?{query}", server.base);
    let now = wall_secs();
    let signed = |at: u64, nonce: &str| push_query(CALLBACK_TOKEN, &at.to_string(), nonce);
    let push = |query: &str, event: &str| post_xml(&hook(query), &follow_xml(openid, event));

    assert_eq!(
        push(&signed(now, "301"), "unsubscribe").0,
        200,
        "{}",
        server.log()
    );
    assert_eq!(server.suppressed_on("wechat"), ["lilei"]);
    let follow = signed(now, "302");
    assert_eq!(push(&follow, "subscribe").0, 200);
    assert_eq!(server.suppressed_on("wechat"), Vec::<String>::new());
    assert_eq!(push(&signed(now, "303"), "unsubscribe").0, 200);
    assert_eq!(server.suppressed_on("wechat"), ["lilei"]);

    let (status, answer) = push(&follow, "subscribe");
    assert_eq!(status, 403, "the replay is refused: {answer}");
    assert!(answer.contains("already received"), "{answer}");
    assert_eq!(
        server.suppressed_on("wechat"),
        ["lilei"],
        "the opt-out stands"
    );

    for stale in [now - 600, now + 600] {
        let (status, answer) = push(&signed(stale, "304"), "subscribe");
        assert_eq!(status, 403, "signed at {stale}, now {now}: {answer}");
        assert!(answer.contains("callback_window"), "{answer}");
    }
    assert_eq!(server.suppressed_on("wechat"), ["lilei"]);
}
