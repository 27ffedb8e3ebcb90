//! The OpenAPI document served at `/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{device, manage};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rota update server",
        description = "Device API (requests signed with the device identity key, `Rota-*` \
                       headers) and management API (bearer tokens with roles). TUF metadata \
                       and targets are served under /tuf/ without authentication."
    ),
    paths(
        device::checkin::checkin,
        device::checkin::report,
        device::enroll,
        device::whoami,
        manage::tokens::create,
        manage::tokens::list,
        manage::tokens::revoke,
        manage::tokens::audit_log,
        manage::releases::put_artifact,
        manage::releases::put_root,
        manage::releases::put_targets,
        manage::releases::list,
        manage::devices::register,
        manage::devices::list,
        manage::devices::get,
        manage::devices::lifecycle,
        manage::rollouts::create,
        manage::rollouts::list,
        manage::rollouts::get,
        manage::rollouts::action,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
