//! The OpenAPI document served at `/openapi.json`.

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::{attestation, cas, device, manage, revocation};

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
        device::session::open,
        device::rotate::rotate,
        device::rotate::set_policy,
        device::rotate::get_policy,
        device::orders::create,
        device::orders::withdraw,
        device::orders::done,
        device::orders::take_in,
        cas::create,
        cas::list,
        cas::devices,
        cas::retire,
        attestation::challenge,
        attestation::attest,
        attestation::set_policy,
        attestation::get_policy,
        revocation::create,
        revocation::list,
        revocation::devices,
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
        manage::devices::summary,
        manage::devices::get,
        manage::devices::lifecycle,
        manage::rollouts::create,
        manage::rollouts::list,
        manage::rollouts::get,
        manage::rollouts::action,
    ),
    components(schemas(rota_protocol::api::ErrorBody)),
    modifiers(&BearerAuth, &DeviceHeaders, &ErrorAnswers)
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

fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&str, &mut Operation)> {
    openapi.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .filter_map(move |op| op.as_mut().map(|op| (path.as_str(), op)))
    })
}

/// The four `Rota-*` headers every device request carries, with the spelling
/// `rota_protocol::auth::parse_headers` accepts (its module docs are the format).
struct DeviceHeaders;

impl Modify for DeviceHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let headers = [
            (
                rota_protocol::auth::DEVICE_HEADER,
                "The device id.",
                "^[A-Za-z0-9._-]{1,64}$",
            ),
            (
                rota_protocol::auth::TIMESTAMP_HEADER,
                "The device's clock, unix milliseconds, decimal without leading zeros.",
                "^(0|[1-9][0-9]{0,19})$",
            ),
            (
                rota_protocol::auth::NONCE_HEADER,
                "16 random bytes, lowercase hex.",
                "^[0-9a-f]{32}$",
            ),
            (
                rota_protocol::auth::SIGNATURE_HEADER,
                "The request's Ed25519 signature, standard padded base64 of 64 bytes.",
                "^[A-Za-z0-9+/]{85}[AQgw]==$",
            ),
        ];
        // A check-in or a report may carry a session MAC instead of the signature
        // (`rota_protocol::session`).
        let session_headers = [
            (
                rota_protocol::session::SESSION_HEADER,
                "A session token (from POST /api/v1/device/session), instead of Rota-Signature; check-ins and reports only.",
                "^[A-Za-z0-9+/=]{1,256}$",
            ),
            (
                rota_protocol::session::MAC_HEADER,
                "HMAC-SHA256 of the request under the session key, standard padded base64 of 32 bytes; with Rota-Session.",
                "^[A-Za-z0-9+/]{43}=$",
            ),
        ];
        for (path, op) in operations(openapi) {
            if !path.starts_with("/api/v1/device/") {
                continue;
            }
            let by_session = [
                rota_protocol::api::CHECKIN_PATH,
                rota_protocol::api::REPORT_PATH,
            ]
            .contains(&path);
            let params = op.parameters.get_or_insert_with(Vec::new);
            let optional = session_headers.iter().filter(|_| by_session);
            for (name, description, pattern) in headers.iter().chain(optional) {
                let required = !(by_session
                    && [
                        rota_protocol::auth::SIGNATURE_HEADER,
                        rota_protocol::session::SESSION_HEADER,
                        rota_protocol::session::MAC_HEADER,
                    ]
                    .contains(name));
                let schema = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(*pattern));
                params.push(
                    ParameterBuilder::new()
                        .name(*name)
                        .parameter_in(ParameterIn::Header)
                        .required(if required {
                            Required::True
                        } else {
                            Required::False
                        })
                        .description(Some(*description))
                        .schema(Some(schema))
                        .build(),
                );
            }
        }
    }
}

/// Every refusal is a 4xx and every fault a 5xx, each with an [`ErrorBody`]
/// (`crate::error`), on every operation.
///
/// [`ErrorBody`]: rota_protocol::api::ErrorBody
struct ErrorAnswers;

impl Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let answer = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (_, op) in operations(openapi) {
            let responses = &mut op.responses.responses;
            responses.entry("4XX".into()).or_insert_with(|| {
                answer("The request is refused; the reason is one sentence.").into()
            });
            responses
                .entry("5XX".into())
                .or_insert_with(|| answer("A fault of the server's own, logged there.").into());
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;
    use utoipa::openapi::path::ParameterIn;

    use super::{ApiDoc, operations};

    /// schemathesis (scripts/api-fuzz.sh) refused the document: `DELETE /api/v1/tokens/{id}`
    /// did not declare `id`, and every refusal was an undocumented status code.
    #[test]
    fn openapi_declares_every_path_parameter_header_and_error_answer() {
        let mut doc = ApiDoc::openapi();
        for (path, op) in operations(&mut doc) {
            let params = op.parameters.as_deref().unwrap_or_default();
            let declared = |name: &str, place: ParameterIn| {
                params
                    .iter()
                    .any(|p| p.name == name && p.parameter_in == place)
            };
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(
                        declared(name, ParameterIn::Path),
                        "{path} does not declare {name}"
                    );
                }
            }
            if path.starts_with("/api/v1/device/") {
                for header in [
                    "Rota-Device",
                    "Rota-Timestamp",
                    "Rota-Nonce",
                    "Rota-Signature",
                ] {
                    assert!(
                        declared(header, ParameterIn::Header),
                        "{path} lacks {header}"
                    );
                }
            }
            for range in ["4XX", "5XX"] {
                assert!(
                    op.responses.responses.contains_key(range),
                    "{path} lacks {range}"
                );
            }
        }
    }
}
