//! stub
#[test]
fn t() {}
