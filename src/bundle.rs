//! Tyk plugin bundles: building and verifying them as the gateway does.
