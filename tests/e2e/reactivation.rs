//! The shipped consumer-lending reactivation strategy (examples/reactivation)
//! simulated over four months, exactly as shipped: the four dormancy models,
//! the push → SMS → email → phone-task escalation with its goal, the loan
//! cadence alert, the VIP upgrade and VIP dormancy repeats, send windows in
//! each customer's zone (rule override, DST), frequency caps that defer and
//! drop, transactional receipts, and zh-CN / English text by locale. Every
//! expected attempt below was worked out by hand from herald.toml and
//! timeline.jsonl; the arithmetic is in the comments.
//!
//! Zones used: Asia/Shanghai, Asia/Taipei, Asia/Hong_Kong = UTC+8, so the
//! strategy windows 11:00-12:00 and 19:00-21:00 local are 03:00-04:00Z and
//! 11:00-13:00Z. Asia/Kolkata = UTC+5:30; Asia/Ho_Chi_Minh = UTC+7;
//! America/Los_Angeles = UTC-8 until 2026-03-08; Europe/Berlin = UTC+1 until
//! 2026-03-29, UTC+2 after. A window's end is exclusive (12:00 is outside).
//! Caps: at most 2 counted sends in any 7 days (a send at exactly now - 7d no
//! longer counts) and 1 SMS in any day; a capped send waits until the oldest
//! counted send is 7 days old. Receipts are transactional: no window, no cap,
//! not counted.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;

const FROM: &str = "2026-01-01";
const UNTIL: &str = "2026-05-01";

/// (at, rule, channel or "-", status)
type Row = (String, String, String, String);

fn row(at: &str, rule: &str, channel: &str, status: &str) -> Row {
    (at.into(), rule.into(), channel.into(), status.into())
}

/// Every attempt, hand-computed, per customer, in time order.
fn expected() -> BTreeMap<&'static str, Vec<Row>> {
    let mut e: BTreeMap<&'static str, Vec<Row>> = BTreeMap::new();

    // ── Dormancy model 1: registered, no visit within 3 days ──────────────
    // 王芳 registers 01-06 02:00Z; no visit: due 01-09 02:00Z = 10:00 Shanghai,
    // before the 11:00 window → deferred to 11:00 = 03:00Z.
    // Coupon 02-10 01:00Z = 09:00 local → 11:00 = 03:00Z; nothing else was
    // sent to her in the 7 days before, so the cap lets it through.
    e.insert(
        "ax-101",
        vec![
            row("2026-01-09T02:00:00Z", "no-visit", "push", "deferred"),
            row("2026-01-09T03:00:00Z", "no-visit", "push", "delivered"),
            row("2026-02-10T01:00:00Z", "coupon", "sms", "deferred"),
            row("2026-02-10T03:00:00Z", "coupon", "sms", "delivered"),
        ],
    );
    // 李雷 visits the day after registering: nothing.
    e.insert("ax-102", vec![]);
    // Priya (Kolkata, UTC+5:30) registers 01-10 06:30Z; due 01-13 06:30Z =
    // 12:00 IST, the end of the morning window (exclusive) → 19:00 IST =
    // 13:30Z.
    e.insert(
        "ax-103",
        vec![
            row("2026-01-13T06:30:00Z", "no-visit", "push", "deferred"),
            row("2026-01-13T13:30:00Z", "no-visit", "push", "delivered"),
        ],
    );
    // 陳美玲 (Taipei, UTC+8, zh-TW) registers 02-02 05:00Z; due 02-05 05:00Z
    // = 13:00 local → 19:00 = 11:00Z. JPush no longer knows her
    // registration id (error 1011, jpush-answers.json): the push fails as
    // an invalid address, the device is forgotten, and the rule's next
    // channel, SMS, carries it at once (no other SMS that day).
    e.insert(
        "ax-104",
        vec![
            row("2026-02-05T05:00:00Z", "no-visit", "push", "deferred"),
            row("2026-02-05T11:00:00Z", "no-visit", "push", "failed"),
            row("2026-02-05T11:00:00Z", "no-visit", "sms", "delivered"),
        ],
    );
    // 张小北 registers 02-02 06:00Z and closes the account 02-04, before the
    // 02-05 06:00Z reminder: nothing.
    e.insert("ax-105", vec![]);
    // Daniel (Los Angeles, PST = UTC-8 before 03-08, no locale) registers
    // 03-02 20:00Z on the website: no app (no device), no phone, so the
    // rule's push and SMS are passed over for its email. Due 03-05 20:00Z
    // = 12:00 PST → 19:00 PST = 03-06 03:00Z.
    e.insert(
        "ax-106",
        vec![
            row("2026-03-05T20:00:00Z", "no-visit", "email", "deferred"),
            row("2026-03-06T03:00:00Z", "no-visit", "email", "delivered"),
        ],
    );

    // ── Dormancy model 2: application not finished within 3 days ─────────
    // 张伟 starts an application 01-12 01:20Z, never submits: due 01-15
    // 01:20Z = 09:20 local. The rule's own window (19:00-21:00 only)
    // replaces the strategy's, so not 11:00 but 19:00 = 11:00Z.
    // Coupon 01-15 12:30Z = 20:30 local, inside the window, but he had an
    // SMS at 11:00Z: "1 per 1d on sms" is full (overall: 1 of 2) and the
    // coupon rule says on_cap = "drop" → skipped.
    e.insert(
        "ax-201",
        vec![
            row(
                "2026-01-15T01:20:00Z",
                "application-unfinished",
                "sms",
                "deferred",
            ),
            row(
                "2026-01-15T11:00:00Z",
                "application-unfinished",
                "sms",
                "delivered",
            ),
            row("2026-01-15T12:30:00Z", "coupon", "-", "skipped"),
        ],
    );
    // 陈静 submits the next day, is granted credit and borrows within 7 days.
    e.insert("ax-202", vec![]);
    // Nguyễn (Ho Chi Minh City, UTC+7, locale vi) starts 02-03 12:00Z; due
    // 02-06 12:00Z = 19:00 local, the start of the evening window: at once.
    e.insert(
        "ax-203",
        vec![row(
            "2026-02-06T12:00:00Z",
            "application-unfinished",
            "sms",
            "delivered",
        )],
    );

    // ── Dormancy model 3: credit granted, no loan within 7 days ──────────
    // 刘洋: credit 01-16 03:30Z (11:30 local), never borrows. The full
    // escalation:
    //   push  due 01-23 03:30Z (11:30 local, in window; nothing counted) → sent.
    //   sms   3d later, 01-26 03:30Z; counted in the last 7d: the push (1) → sent.
    //   email 3d later, 01-29 03:30Z; counted: push 01-23 + sms 01-26 = 2 →
    //         capped; free when the push is 7 days old: 01-30 03:30Z. Then
    //         the push (exactly 7d old) no longer counts → sent.
    //   call  3d after the email, 02-02 03:30Z; counted: the email (the SMS
    //         is exactly 7d old) → sent: a task on the staff call list.
    e.insert(
        "ax-301",
        vec![
            row("2026-01-23T03:30:00Z", "credit-unused", "push", "delivered"),
            row("2026-01-26T03:30:00Z", "credit-unused", "sms", "delivered"),
            row("2026-01-29T03:30:00Z", "credit-unused", "email", "deferred"),
            row(
                "2026-01-30T03:30:00Z",
                "credit-unused",
                "email",
                "delivered",
            ),
            row(
                "2026-02-02T03:30:00Z",
                "credit-unused",
                "calls",
                "delivered",
            ),
        ],
    );
    // 赵敏: credit 01-16 12:00Z (20:00 local); push 01-23 12:00Z (20:00, in
    // window). She borrows 01-24 05:00Z, within 3 days of the push: the goal
    // is recorded against the push, SMS, email and call never happen.
    e.insert(
        "ax-302",
        vec![row(
            "2026-01-23T12:00:00Z",
            "credit-unused",
            "push",
            "delivered",
        )],
    );
    // 马丽: credit 02-10 03:00Z (11:00 local); she uninstalls the app 02-14
    // (`app_uninstalled` forgets her device), so the first message, due
    // 02-17 03:00Z, passes over push for SMS (her limit, 3000, is at least
    // the rule's 2000 for SMS). SMS step 02-20 03:00Z (another day, 1 sent
    // in 7d), email due 02-23 03:00Z capped (2 in 7d) until the first SMS is
    // 7 days old: 02-24 03:00Z. She borrows 02-25 04:00Z, within 3 days of
    // the email: goal recorded on the email, no call.
    e.insert(
        "ax-303",
        vec![
            row("2026-02-17T03:00:00Z", "credit-unused", "sms", "delivered"),
            row("2026-02-20T03:00:00Z", "credit-unused", "sms", "delivered"),
            row("2026-02-23T03:00:00Z", "credit-unused", "email", "deferred"),
            row(
                "2026-02-24T03:00:00Z",
                "credit-unused",
                "email",
                "delivered",
            ),
        ],
    );
    // Kevin borrows two days after his credit: nothing.
    e.insert("ax-304", vec![]);

    // ── Dormancy model 4: loan repaid, no new loan within 30 days ────────
    // 孙丽 repays 02-03 06:00Z = 14:00 local: the receipt goes at once
    // (transactional, outside the window). 30 days later, 03-05 06:00Z =
    // 14:00 local → 19:00 = 11:00Z.
    e.insert(
        "ax-401",
        vec![
            row(
                "2026-02-03T06:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row(
                "2026-03-05T06:00:00Z",
                "repaid-no-new-loan",
                "push",
                "deferred",
            ),
            row(
                "2026-03-05T11:00:00Z",
                "repaid-no-new-loan",
                "push",
                "delivered",
            ),
        ],
    );
    // 周杰 repays 02-02 12:00Z (receipt), coupon 02-10 03:15Z = 11:15 local
    // (in window, nothing counted) → sent; borrows again 02-20, within 30
    // days: no "repaid" reminder. He becomes a regular (level → "regular",
    // not "vip": no VIP message), so the cadence rule now looks at him: one
    // day after his loan, 02-21 03:00Z, the plugin sees only 2 loans → skip.
    e.insert(
        "ax-402",
        vec![
            row(
                "2026-02-02T12:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-02-10T03:15:00Z", "coupon", "sms", "delivered"),
            row("2026-02-21T03:00:00Z", "loan-cadence", "-", "skipped"),
        ],
    );

    // ── Cadence break ────────────────────────────────────────────────────
    // 黄磊 (regular) is imported 01-02 01:00Z: no loans yet → skip. Loans
    // 01-05, 02-05, 03-06 at 02:00Z; the rule fires 1 day after each: 1 and
    // 2 loans → skip; 3 loans → gaps 31 and 29 days, usual = 30 days, due =
    // 03-06 02:00Z + 30 × 1.2 = 36 days = 04-11 02:00Z → deferred until then.
    // At 04-11 02:00Z (10:00 local) the plugin says send, the window says
    // 11:00 = 03:00Z → sent then: 36 days 1 hour since the last loan.
    // Receipts at 02:00Z (10:00 local, outside the window) go at once. His
    // 02-04 and 03-05 repayments are followed by a loan within 30 days; the
    // 04-03 one would remind on 05-03, after the simulation.
    e.insert(
        "ax-501",
        vec![
            row("2026-01-02T01:00:00Z", "loan-cadence", "-", "skipped"),
            row("2026-01-06T02:00:00Z", "loan-cadence", "-", "skipped"),
            row(
                "2026-02-04T02:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-02-06T02:00:00Z", "loan-cadence", "-", "skipped"),
            row(
                "2026-03-05T02:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-03-07T02:00:00Z", "loan-cadence", "push", "deferred"),
            row(
                "2026-04-03T02:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-04-11T02:00:00Z", "loan-cadence", "push", "deferred"),
            row("2026-04-11T03:00:00Z", "loan-cadence", "push", "delivered"),
        ],
    );
    // 吴刚 borrows every 30 days (01-08, 02-07, 03-09, 04-08 at 04:00Z) and
    // keeps the rhythm: after the 3rd loan the alert waits for 04-14 04:00Z
    // (03-09 + 36d); the 4th loan on 04-08 moves it to 05-14 (04-08 + 36d),
    // after the simulation. Never sent.
    e.insert(
        "ax-502",
        vec![
            row("2026-01-02T01:00:00Z", "loan-cadence", "-", "skipped"),
            row("2026-01-09T04:00:00Z", "loan-cadence", "-", "skipped"),
            row(
                "2026-02-06T04:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-02-08T04:00:00Z", "loan-cadence", "-", "skipped"),
            row(
                "2026-03-08T04:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-03-10T04:00:00Z", "loan-cadence", "push", "deferred"),
            row(
                "2026-04-07T04:00:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row("2026-04-09T04:00:00Z", "loan-cadence", "push", "deferred"),
        ],
    );

    // ── VIP ──────────────────────────────────────────────────────────────
    // 郑爽 (regular: the cadence skips her, no loans) logs in 03-10 12:00Z
    // and becomes VIP at 12:30Z = 20:30 local: the upgrade message at once.
    // VIP dormancy counts from that login: 14 days → 03-24 12:00Z (20:00
    // local), repeat 14 days → 04-07 12:00Z, max 2. Her `preferred_channel`
    // is SMS, which the rule lists after push: both go by SMS (no other SMS
    // on those days).
    e.insert(
        "ax-601",
        vec![
            row("2026-01-02T01:00:00Z", "loan-cadence", "-", "skipped"),
            row("2026-03-10T12:30:00Z", "vip-upgrade", "inbox", "delivered"),
            row("2026-03-24T12:00:00Z", "vip-no-login", "sms", "delivered"),
            row("2026-04-07T12:00:00Z", "vip-no-login", "sms", "delivered"),
        ],
    );
    // Tom (Berlin) becomes VIP 03-12 09:00Z = 10:00 CET → 11:00 CET = 10:00Z.
    // His login on 03-20 10:00Z restarts the VIP dormancy spell: 14 days →
    // 04-03 10:00Z = 12:00 CEST (summer time since 03-29) → 19:00 CEST =
    // 17:00Z; repeat: 03-20 10:00Z + 28d = 04-17 10:00Z → 17:00Z.
    e.insert(
        "ax-602",
        vec![
            row("2026-01-02T01:00:00Z", "loan-cadence", "-", "skipped"),
            row("2026-03-12T09:00:00Z", "vip-upgrade", "inbox", "deferred"),
            row("2026-03-12T10:00:00Z", "vip-upgrade", "inbox", "delivered"),
            row("2026-04-03T10:00:00Z", "vip-no-login", "push", "deferred"),
            row("2026-04-03T17:00:00Z", "vip-no-login", "push", "delivered"),
            row("2026-04-17T10:00:00Z", "vip-no-login", "push", "deferred"),
            row("2026-04-17T17:00:00Z", "vip-no-login", "push", "delivered"),
        ],
    );

    // ── Active customers ─────────────────────────────────────────────────
    // 何平 pays an instalment at 21:40 and the rest at 07:50 local: both
    // receipts at once; borrows again 6 days after repaying.
    e.insert(
        "ax-703",
        vec![
            row(
                "2026-02-09T13:40:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
            row(
                "2026-03-10T23:50:00Z",
                "repayment-received",
                "sms",
                "delivered",
            ),
        ],
    );
    // Went through the whole funnel in time, or just visit the app.
    e.insert("ax-701", vec![]);
    e.insert("ax-702", vec![]);
    e.insert("ax-704", vec![]);
    e
}

fn rows_by_customer(rows: &[Value]) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        out.entry(r["customer"].as_str().unwrap().to_string())
            .or_default()
            .push(row(
                r["at"].as_str().unwrap(),
                r["rule"].as_str().unwrap(),
                r["channel"].as_str().unwrap_or("-"),
                r["status"].as_str().unwrap(),
            ));
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

fn find<'a>(rows: &'a [Value], customer: &str, rule: &str, at: &str, status: &str) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["customer"] == customer && r["rule"] == rule && r["at"] == at && r["status"] == status
        })
        .unwrap_or_else(|| panic!("no {status} {rule} row for {customer} at {at}"))
}

fn lines(out: &std::process::Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn the_lending_reactivation_example_does_what_its_readme_says() {
    let root = repo_root();
    let config = root.join("examples/reactivation/herald.toml");
    let timeline = root.join("examples/reactivation/timeline.jsonl");
    // The example names its channel plugins relative to itself.
    plugin("console");
    plugin("cadence");
    plugin("push-jpush");
    let scratch = Scratch::new();
    let db = scratch.db("reactivation.db");
    let out = run(simulate_cmd(&config, &timeline, FROM, UNTIL)
        .arg("--db")
        .arg(&db)
        // JPush's answers, canned: one stale registration id, the rest accepted.
        .arg("--http")
        .arg(root.join("examples/reactivation/jpush-answers.json"))
        // The console plugin logs each message it "sends": the email's
        // unsubscribe link is checked below.
        .env("HERALD_LOG", "info"));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "simulate failed: {stderr}");
    assert!(
        stderr.contains("135 operation(s) applied, 0 refused"),
        "every timeline line is valid: {stderr}"
    );
    let attempts = parse_attempts(&text(&out.stdout));
    let rows = deliveries(&config, &db);
    assert_eq!(attempts.len(), rows.len(), "one stdout line per attempt");

    // ── Per customer, every attempt, hand-computed ───────────────────────
    let got = rows_by_customer(&rows);
    let want = expected();
    for (customer, expected_rows) in &want {
        let actual = got.get(*customer).cloned().unwrap_or_default();
        assert_eq!(&actual, expected_rows, "attempts of {customer}");
    }
    let unexpected: Vec<&String> = got
        .keys()
        .filter(|c| !want.contains_key(c.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "attempts for {unexpected:?}");

    // ── Locale: zh-CN exact, zh-TW by language, else the English text ───
    let subject = |customer: &str, rule: &str, at: &str| -> String {
        find(&rows, customer, rule, at, "delivered")["subject"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        subject("ax-101", "no-visit", "2026-01-09T03:00:00Z"),
        "王芳，2分钟测出您的安心借额度"
    );
    assert_eq!(
        subject("ax-104", "no-visit", "2026-02-05T11:00:00Z"),
        "陳美玲，2分钟测出您的安心借额度",
        "zh-TW falls back to the zh-CN translation"
    );
    assert_eq!(
        subject("ax-103", "no-visit", "2026-01-13T13:30:00Z"),
        "Priya Nair, see your AnXin credit limit in 2 minutes"
    );
    assert_eq!(
        subject("ax-106", "no-visit", "2026-03-06T03:00:00Z"),
        "Daniel Lee, see your AnXin credit limit in 2 minutes",
        "no locale: the rule's own text"
    );
    assert_eq!(
        subject("ax-203", "application-unfinished", "2026-02-06T12:00:00Z"),
        "Your AnXin application is almost done",
        "vi has no translation: English"
    );
    assert_eq!(
        subject("ax-201", "application-unfinished", "2026-01-15T11:00:00Z"),
        "您的安心借申请只差一步"
    );
    assert_eq!(
        subject("ax-401", "repayment-received", "2026-02-03T06:00:00Z"),
        "还款成功：¥2000"
    );
    assert_eq!(
        subject("ax-401", "repaid-no-new-loan", "2026-03-05T11:00:00Z"),
        "感谢按时还款，您的额度已恢复"
    );
    assert_eq!(
        subject("ax-602", "vip-no-login", "2026-04-03T17:00:00Z"),
        "Your AnXin account manager is here for you"
    );
    // The escalation: the first message is translated; the follow-up steps
    // carry both languages.
    assert_eq!(
        subject("ax-301", "credit-unused", "2026-01-23T03:30:00Z"),
        "您的¥8000额度已到账，随借随还"
    );
    assert_eq!(
        subject("ax-301", "credit-unused", "2026-01-26T03:30:00Z"),
        "额度提醒 Credit reminder"
    );
    assert_eq!(
        subject("ax-301", "credit-unused", "2026-01-30T03:30:00Z"),
        "您的额度仍为您保留 / Your credit is still reserved"
    );

    // ── Cadence alert at the first missed interval, with its variables ──
    // 04-11 03:00Z − 03-06 02:00Z = 36 days 1 hour → 36 days since the last
    // loan; the text says "every 30 days".
    assert_eq!(
        subject("ax-501", "loan-cadence", "2026-04-11T03:00:00Z"),
        "黄磊，距您上次借款已36天"
    );
    let waits = find(
        &rows,
        "ax-501",
        "loan-cadence",
        "2026-03-07T02:00:00Z",
        "deferred",
    );
    assert_eq!(waits["retry_at"], "2026-04-11T02:00:00Z", "{waits}");
    assert_eq!(
        find(
            &rows,
            "ax-501",
            "loan-cadence",
            "2026-01-06T02:00:00Z",
            "skipped"
        )["error"],
        "targeting: only 1 loan event; the cadence needs 3"
    );
    assert_eq!(
        find(
            &rows,
            "ax-502",
            "loan-cadence",
            "2026-04-09T04:00:00Z",
            "deferred"
        )["retry_at"],
        "2026-05-14T04:00:00Z",
        "the steady borrower's alert moved past the simulation"
    );

    // ── Send windows: deferred to the next local opening ────────────────
    let window = find(
        &rows,
        "ax-103",
        "no-visit",
        "2026-01-13T06:30:00Z",
        "deferred",
    );
    assert_eq!(
        window["error"],
        "outside the send window (11:00-12:00, 19:00-21:00 in Asia/Kolkata); deferred to the next opening"
    );
    assert_eq!(window["retry_at"], "2026-01-13T13:30:00Z");
    let evening = find(
        &rows,
        "ax-201",
        "application-unfinished",
        "2026-01-15T01:20:00Z",
        "deferred",
    );
    assert_eq!(
        evening["error"],
        "outside the send window (19:00-21:00 in Asia/Shanghai); deferred to the next opening",
        "the rule's window replaces the strategy's"
    );
    assert_eq!(
        find(
            &rows,
            "ax-602",
            "vip-no-login",
            "2026-04-03T10:00:00Z",
            "deferred"
        )["retry_at"],
        "2026-04-03T17:00:00Z",
        "19:00 in Berlin summer time"
    );

    // ── Routing by what the customer has ────────────────────────────────
    let stale = find(
        &rows,
        "ax-104",
        "no-visit",
        "2026-02-05T11:00:00Z",
        "failed",
    );
    let why = stale["error"].as_str().unwrap();
    assert!(
        why.contains("1011"),
        "JPush's error reaches the record: {stale}"
    );
    let customers = lines(&run(herald()
        .args(["customers", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)));
    let devices = |id: &str| -> usize {
        let c = customers.iter().find(|c| c["external_id"] == id).unwrap();
        c["devices"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(
        devices("ax-104"),
        0,
        "JPush's unknown registration id is forgotten"
    );
    assert_eq!(devices("ax-303"), 0, "the uninstall forgot her device");
    assert_eq!(devices("ax-101"), 1);
    let (_, explained) = {
        let out = run(herald()
            .args([
                "explain",
                "ax-601",
                "--at",
                "2026-04-07T12:00:00Z",
                "--config",
            ])
            .arg(&config)
            .arg("--db")
            .arg(&db));
        (out.status, text(&out.stdout) + &text(&out.stderr))
    };
    assert!(
        explained.contains("would go by sms (the customer's preferred channel)"),
        "explain says why SMS goes first: {explained}"
    );

    // ── Caps: one deferred, one dropped ─────────────────────────────────
    let capped = find(
        &rows,
        "ax-301",
        "credit-unused",
        "2026-01-29T03:30:00Z",
        "deferred",
    );
    assert_eq!(
        capped["error"],
        "capped (2 per 7d); deferred until the cap allows"
    );
    assert_eq!(capped["retry_at"], "2026-01-30T03:30:00Z");
    let dropped = find(&rows, "ax-201", "coupon", "2026-01-15T12:30:00Z", "skipped");
    assert_eq!(
        dropped["error"],
        "capped (1 per 1d on sms); dropped, as the rule says on_cap = \"drop\""
    );
    // Receipts never wait and never count: 何平's came at 21:40 and 07:50
    // local, outside both windows.
    assert!(rows
        .iter()
        .filter(|r| r["rule"] == "repayment-received")
        .all(|r| r["status"] == "delivered"));

    // ── Goals: recorded against the message that preceded them ──────────
    let mut goals: Vec<(String, String, String, String)> = rows
        .iter()
        .filter(|r| r["goal"].is_string())
        .map(|r| {
            (
                r["customer"].as_str().unwrap().to_string(),
                r["channel"].as_str().unwrap().to_string(),
                r["goal"].as_str().unwrap().to_string(),
                r["goal_at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    goals.sort();
    assert_eq!(
        goals,
        [
            // Loan 01-24 05:00Z, 17 hours after the push of 01-23 12:00Z.
            (
                "ax-302".to_string(),
                "push".to_string(),
                "loan".to_string(),
                "2026-01-24T05:00:00Z".to_string()
            ),
            // Loan 02-25 04:00Z, a day after the email of 02-24 03:00Z.
            (
                "ax-303".to_string(),
                "email".to_string(),
                "loan".to_string(),
                "2026-02-25T04:00:00Z".to_string()
            ),
        ]
    );

    // ── The staff call list: only the customer who ignored everything ───
    let tasks = lines(&run(herald()
        .args(["tasks", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)));
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["customer"], "ax-301");
    assert_eq!(tasks[0]["name"], "刘洋");
    assert_eq!(tasks[0]["phone"], "+8613900000301");
    assert_eq!(tasks[0]["title"], "回访：授信未用 Call: credit unused");
    assert_eq!(
        tasks[0]["reason"],
        "刘洋 (+8613900000301) was granted ¥8000 and has not borrowed after push, SMS and email. Ask whether anything is unclear."
    );
    assert_eq!(tasks[0]["created_at"], "2026-02-02T03:30:00Z");

    // ── `to = "vip"`: the upgrade message, in each customer's language ──
    let inbox = |customer: &str| {
        lines(&run(herald()
            .args(["inbox", customer, "--json", "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&db)))
    };
    let zheng = inbox("ax-601");
    assert_eq!(zheng.len(), 1, "{zheng:?}");
    assert_eq!(zheng[0]["subject"], "恭喜您升级为安心借VIP");
    assert_eq!(
        zheng[0]["text"],
        "郑爽，恭喜您成为安心借VIP：更低日息、更高额度，并有专属客户经理为您服务。"
    );
    let tom = inbox("ax-602");
    assert_eq!(tom.len(), 1, "{tom:?}");
    assert_eq!(tom[0]["subject"], "Welcome to AnXin VIP");
    assert!(
        tom[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Tom Becker, you are now an AnXin VIP"),
        "{tom:?}"
    );
    // 周杰's level changed too, to "regular": no VIP message.
    assert!(inbox("ax-402").is_empty());

    // ── The email step carries signed unsubscribe and preference links ──
    assert!(
        stderr.contains("退订 Unsubscribe: https://anxin.example/unsubscribe?c=ax-301&ch=email&s="),
        "{stderr}"
    );
    assert!(
        stderr.contains("通知设置 Preferences: https://anxin.example/preferences?c=ax-301&s="),
        "and a signed link to the customer's preference page: {stderr}"
    );
    // Every rule has a topic (receipts' is transactional only): `herald
    // check` has nothing to warn about.
    let check = run(herald().args(["check", "--config"]).arg(&config));
    let report = text(&check.stdout) + &text(&check.stderr);
    assert!(!report.contains("no topic"), "{report}");
}
