//! Which APIs a session opens. Tyk reads empty `access_rights` as "every
//! API"; in id_extractor mode it stores the session under a key the client
//! can compute (org + MD5 of its `Authorization` value), which the client can
//! then present to any auth-token API of the organisation.

use crate::support::fake_tyk::{Auth, Gateway, Policy, extractor_id, template_body};
use crate::support::*;

const ORG: &str = "default";

/// The plugin's API, with Tyk's id_extractor on `Authorization`.
fn orders_api() -> Api {
    Api {
        api_id: "orders-api".into(),
        org_id: ORG.into(),
        id_extractor_header: Some("Authorization".into()),
        ..Api::default()
    }
}

/// An API of the same organisation using Tyk's standard auth-token check.
fn billing_api() -> Api {
    Api {
        api_id: "billing-api".into(),
        org_id: ORG.into(),
        auth: Auth::AuthToken,
        ..Api::default()
    }
}

async fn gateway(app: &TestApp, api: Api) -> Gateway {
    Gateway::connect(app.addr, api).await
}

#[tokio::test]
async fn a_stored_session_is_refused_on_another_api_and_works_on_its_own() {
    let app = spawn_app().await;
    app.fake_as
        .script("phantom-1", Behaviour::Jwt(Claims::valid_for("ann", 600)));
    let gw = gateway(&app, orders_api()).await;

    let first = gw
        .request(ClientRequest::get("/orders/").bearer("phantom-1"))
        .await;
    assert_eq!(first.status(), 200);
    let key = extractor_id(ORG, "Bearer phantom-1");
    assert_eq!(first.session_key.as_deref(), Some(key.as_str()));

    // The key the client computed, presented to an auth-token API.
    let replay = gw
        .request_to(
            &billing_api(),
            ClientRequest::get("/billing/").header("Authorization", &key),
        )
        .await;
    assert_eq!(replay.status(), 403);
    assert_eq!(
        replay.response().body,
        template_body("Access to this API has been disallowed")
    );
    assert!(replay.upstream.is_none());

    let session = gw.stored(&key).expect("stored under the extractor ID");
    let granted: Vec<&String> = session.access_rights.keys().collect();
    assert_eq!(granted, vec!["orders-api"], "only the calling API");
    let own = &session.access_rights["orders-api"];
    assert_eq!(own.api_id, "orders-api");
    assert!(own.allowed_urls.is_empty(), "every path of it");

    // Its own API still works, from Tyk's cache.
    let again = gw
        .request(ClientRequest::get("/orders/").bearer("phantom-1"))
        .await;
    assert_eq!(again.status(), 200);
    assert!(!again.plugin_called);
}

#[tokio::test]
async fn without_an_extractor_the_session_also_names_only_its_api() {
    let app = spawn_app().await;
    app.fake_as
        .script("phantom-2", Behaviour::Jwt(Claims::valid_for("bob", 600)));
    let outcome = app.get_with_token("phantom-2").await;
    assert_eq!(outcome.status(), 200);
    let session = app.gateway.stored(&outcome.session_key.unwrap()).unwrap();
    let granted: Vec<&String> = session.access_rights.keys().collect();
    assert_eq!(granted, vec!["orders-api"]);
}

#[tokio::test]
async fn a_versioned_api_is_opened_for_the_versions_config_data_lists() {
    let app = spawn_app().await;
    app.fake_as
        .script("phantom-3", Behaviour::Jwt(Claims::valid_for("cy", 600)));
    let unlisted = gateway(
        &app,
        Api {
            api_id: "versioned-api".into(),
            version: Some("v2".into()),
            ..Api::default()
        },
    )
    .await;
    let refused = unlisted
        .request(ClientRequest::get("/").bearer("phantom-3"))
        .await;
    assert_eq!(refused.status(), 403, "Tyk needs the version listed");

    let listed = gateway(
        &app,
        Api {
            api_id: "versioned-api".into(),
            version: Some("v2".into()),
            config_data: Some(serde_json::json!({ "api_versions": ["v1", "v2"] })),
            ..Api::default()
        },
    )
    .await;
    let outcome = listed
        .request(ClientRequest::get("/").bearer("phantom-3"))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let session = listed.stored(&outcome.session_key.unwrap()).unwrap();
    assert_eq!(
        session.access_rights["versioned-api"].versions,
        ["v1", "v2"]
    );
}

#[tokio::test]
async fn applied_policies_decide_which_apis_the_session_opens() {
    let app = spawn_app_with(|s| {
        s.env("APPLY_POLICIES", "pol-orders-billing");
    })
    .await;
    app.fake_as
        .script("phantom-4", Behaviour::Jwt(Claims::valid_for("dee", 600)));
    let gw = gateway(&app, orders_api()).await;
    gw.define_policy(Policy {
        id: "pol-orders-billing".into(),
        org_id: ORG.into(),
        access_rights: vec![
            ("orders-api".into(), vec!["Default".into()]),
            ("billing-api".into(), vec!["Default".into()]),
        ],
        tags: Vec::new(),
    });

    let first = gw
        .request(ClientRequest::get("/").bearer("phantom-4"))
        .await;
    assert_eq!(first.status(), 200, "{:?}", first.client);
    let key = extractor_id(ORG, "Bearer phantom-4");
    let mut granted: Vec<String> = gw.stored(&key).unwrap().access_rights.into_keys().collect();
    granted.sort();
    assert_eq!(
        granted,
        ["billing-api", "orders-api"],
        "the policy's rights"
    );
    // What the policy grants, the stored session opens.
    let billing = gw
        .request_to(
            &billing_api(),
            ClientRequest::get("/").header("Authorization", &key),
        )
        .await;
    assert_eq!(billing.status(), 200);
}

#[tokio::test]
async fn a_policy_that_leaves_out_the_calling_api_closes_it() {
    let app = spawn_app_with(|s| {
        s.env("APPLY_POLICIES", "pol-billing-only");
    })
    .await;
    app.fake_as
        .script("phantom-5", Behaviour::Jwt(Claims::valid_for("eve", 600)));
    let gw = gateway(&app, orders_api()).await;
    gw.define_policy(Policy {
        id: "pol-billing-only".into(),
        org_id: ORG.into(),
        access_rights: vec![("billing-api".into(), vec!["Default".into()])],
        tags: Vec::new(),
    });
    let outcome = gw
        .request(ClientRequest::get("/").bearer("phantom-5"))
        .await;
    assert_eq!(outcome.status(), 403);
    assert_eq!(
        outcome.response().body,
        template_body("Access to this API has been disallowed")
    );
}
