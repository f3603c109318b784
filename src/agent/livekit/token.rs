//! What the gateway says about itself in a room: the room's name, the SIP participant's access
//! token (grants, kind, identity, the agent dispatch) and the `sip.*` attributes, shaped like
//! LiveKit's own SIP service so an agent written against it sees the same participant.

use std::collections::HashMap;
use std::time::Duration;

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};
use livekit_protocol::{RoomAgentDispatch, RoomConfiguration};

use crate::agent::CallInfo;

/// LiveKit's SIP service signs its participant tokens for 24 h: a call never outlives that.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Characters of the random part of a room name (36^10 names: no collision across a fleet).
const ROOM_ID_LEN: usize = 10;

/// `sip.callStatus` values the gateway goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallStatus {
    Ringing,
    Active,
    Hangup,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Active => "active",
            CallStatus::Hangup => "hangup",
        }
    }
}

/// `<prefix><short unique id>`, lower-case alphanumerics.
pub fn room_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut name = String::with_capacity(prefix.len() + ROOM_ID_LEN);
    name.push_str(prefix);
    for _ in 0..ROOM_ID_LEN {
        name.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    name
}

/// The SIP participant's identity: `sip_<caller>`, as LiveKit's SIP service names it.
pub fn identity(call: &CallInfo) -> String {
    format!("sip_{}", caller_or_anonymous(call))
}

pub fn display_name(call: &CallInfo) -> String {
    format!("Phone {}", caller_or_anonymous(call))
}

fn caller_or_anonymous(call: &CallInfo) -> &str {
    if call.caller.is_empty() {
        "anonymous"
    } else {
        &call.caller
    }
}

/// The `sip.*` attributes of the participant. `sip.callID` and `sip.callTag` are both our
/// To-tag: LiveKit's SIP service uses its generated local tag as its call id too.
pub fn attributes(call: &CallInfo, status: CallStatus) -> HashMap<String, String> {
    let mut a = HashMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            a.insert(format!("sip.{k}"), v.to_string());
        }
    };
    put("callID", &call.local_tag);
    put("callIDFull", &call.call_id);
    put("callTag", &call.local_tag);
    put("phoneNumber", &call.caller);
    put("trunkPhoneNumber", &call.called);
    put("trunkID", &call.trunk);
    put("callStatus", status.as_str());
    if let Some(sid) = &call.twilio_call_sid {
        put("twilio.callSid", sid);
    }
    if let Some(sid) = &call.twilio_account_sid {
        put("twilio.accountSid", sid);
    }
    a
}

/// The agent dispatch for a new room: one entry naming `agent_name`, or none for automatic
/// dispatch.
pub fn agent_dispatch(agent_name: Option<&str>) -> Vec<RoomAgentDispatch> {
    agent_name
        .map(|n| RoomAgentDispatch {
            agent_name: n.to_string(),
            ..Default::default()
        })
        .into_iter()
        .collect()
}

/// The participant token for joining `room`: kind `sip`, publish/subscribe/data/own-metadata
/// grants, and the room configuration naming the agent, so that a join which creates the room
/// also dispatches the agent.
pub fn participant_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    agent_name: Option<&str>,
    call: &CallInfo,
) -> Result<String, AccessTokenError> {
    let grants = VideoGrants {
        room_join: true,
        room: room.to_string(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        can_update_own_metadata: Some(true),
        ..Default::default()
    };
    AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(TOKEN_TTL)
        .with_identity(&identity(call))
        .with_name(&display_name(call))
        .with_kind("sip")
        .with_grants(grants)
        .with_attributes(attributes(call, CallStatus::Ringing))
        .with_room_config(RoomConfiguration {
            name: room.to_string(),
            agents: agent_dispatch(agent_name),
            ..Default::default()
        })
        .to_jwt()
}

/// A token for one Twirp call with `grants` (short-lived: it is made per request).
pub fn api_token(
    api_key: &str,
    api_secret: &str,
    grants: VideoGrants,
) -> Result<String, AccessTokenError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(Duration::from_secs(600))
        .with_grants(grants)
        .to_jwt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    fn call() -> CallInfo {
        CallInfo {
            call_id: "abc@10.0.0.1".into(),
            local_tag: "SCL_tag1".into(),
            caller: "+447700900123".into(),
            called: "+447846855904".into(),
            trunk: "twilio".into(),
            agent: "room".into(),
            twilio_call_sid: Some("CA123".into()),
            twilio_account_sid: Some("AC456".into()),
            x_headers: Vec::new(),
            law: Default::default(),
        }
    }

    #[test]
    fn room_names_are_prefixed_distinct_and_safe() {
        let a = room_name("hume-call-");
        let b = room_name("hume-call-");
        assert!(a.starts_with("hume-call-"));
        assert_eq!(a.len(), "hume-call-".len() + ROOM_ID_LEN);
        assert_ne!(a, b);
        assert!(a[10..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn participant_token_verifies_with_the_sip_participant_claims() {
        let jwt = participant_token(
            "APIkey",
            "secret-secret",
            "hume-call-x",
            Some("hume"),
            &call(),
        )
        .unwrap();
        let claims = TokenVerifier::with_api_key("APIkey", "secret-secret")
            .verify(&jwt)
            .unwrap();
        assert_eq!(claims.iss, "APIkey");
        assert_eq!(claims.sub, "sip_+447700900123");
        assert_eq!(claims.name, "Phone +447700900123");
        assert_eq!(claims.kind, "sip");
        assert!(claims.video.room_join);
        assert_eq!(claims.video.room, "hume-call-x");
        assert!(claims.video.can_publish());
        assert!(claims.video.can_subscribe());
        assert!(claims.video.can_publish_data());
        assert!(claims.video.can_update_own_metadata());
        assert!(!claims.video.room_admin && !claims.video.room_create);
        let rc = claims.room_config.unwrap();
        assert_eq!(rc.agents.len(), 1);
        assert_eq!(rc.agents[0].agent_name, "hume");
        assert!(claims.exp > claims.nbf + 23 * 3600);
        let a = &claims.attributes;
        assert_eq!(a["sip.callStatus"], "ringing");
        assert_eq!(a["sip.callIDFull"], "abc@10.0.0.1");
        assert_eq!(a["sip.callID"], "SCL_tag1");
        assert_eq!(a["sip.callTag"], "SCL_tag1");
        assert_eq!(a["sip.phoneNumber"], "+447700900123");
        assert_eq!(a["sip.trunkPhoneNumber"], "+447846855904");
        assert_eq!(a["sip.trunkID"], "twilio");
        assert_eq!(a["sip.twilio.callSid"], "CA123");
        assert_eq!(a["sip.twilio.accountSid"], "AC456");
        // Another secret does not verify it.
        assert!(TokenVerifier::with_api_key("APIkey", "other")
            .verify(&jwt)
            .is_err());
    }

    #[test]
    fn automatic_dispatch_names_no_agent_and_empty_values_are_left_out() {
        let mut c = call();
        c.twilio_call_sid = None;
        c.twilio_account_sid = None;
        c.caller = String::new();
        let jwt = participant_token("k", "s", "r", None, &c).unwrap();
        let claims = TokenVerifier::with_api_key("k", "s").verify(&jwt).unwrap();
        assert!(claims.room_config.unwrap().agents.is_empty());
        assert_eq!(claims.sub, "sip_anonymous");
        assert!(!claims.attributes.contains_key("sip.twilio.callSid"));
        assert!(!claims.attributes.contains_key("sip.phoneNumber"));
        assert_eq!(
            attributes(&c, CallStatus::Hangup)["sip.callStatus"],
            "hangup"
        );
    }

    #[test]
    fn api_token_carries_only_the_grants_asked_for() {
        let jwt = api_token(
            "k",
            "s",
            VideoGrants {
                room_create: true,
                ..Default::default()
            },
        )
        .unwrap();
        let claims = TokenVerifier::with_api_key("k", "s").verify(&jwt).unwrap();
        assert!(claims.video.room_create);
        assert!(!claims.video.room_join);
        assert!(claims.sub.is_empty());
    }
}
