//! Fake vendor providers: real servers on loopback that check what the real
//! provider checks and answer with its real error codes.
pub mod aliyun;
pub mod codec;
pub mod fcm;
pub mod jpush;
pub mod twilio;

pub mod sendgrid;
pub mod wechat;
