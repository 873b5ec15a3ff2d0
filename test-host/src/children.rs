//! The parent/child rule of `wasi:http` header fields, as Spin's wasmtime enforces it.
//!
//! The WASI 0.2 HTTP interface says that the `fields` returned by `headers()` on a request or a
//! response is a child of it: it must be dropped before its parent is dropped, consumed or handed
//! on (`outgoing-handler.handle`, `response-outparam.set`). Spin 3.5's wasmtime (37) pushes
//! those fields into the resource table as children, so a guest that breaks the rule traps with
//! "resource has children". wasmtime 48, which this host embeds, hands out an independent copy
//! instead, and would let such a guest pass every test here and then answer 500 to everything
//! under `spin up`. So the four `headers()` methods are redefined here to call wasmtime's own
//! implementation and then move the fields they made under their parent.
//!
//! Bodies and streams need nothing: wasmtime 48 already makes a body's stream and a pollable
//! children of what they came from, as 37 does; a body is not a child of its request in either.

use wasmtime::component::{Linker, LinkerInstance, Resource, ResourceTable};
use wasmtime::StoreContextMut;
use wasmtime_wasi_http::p2::bindings::http::types as wit;
use wasmtime_wasi_http::p2::types::{
    HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
};
use wasmtime_wasi_http::{FieldMap, WasiHttpCtxView, WasiHttpView};

use crate::State;

/// The instance name wasmtime-wasi-http 48 defines `wasi:http/types` under; the component's
/// `@0.2.6` import resolves to it by semver.
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// wasmtime's own `headers()` of one of the four types.
type Headers<P> = fn(&mut WasiHttpCtxView<'_>, Resource<P>) -> wasmtime::Result<Resource<FieldMap>>;

/// Redefines `headers()` of the four request and response types in `linker` (after wasmtime's
/// own HTTP interfaces were added) so that the fields are children of what they came from.
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(HTTP_TYPES)?;
    let incoming_request: Headers<HostIncomingRequest> = |v, r| wit::HostIncomingRequest::headers(v, r);
    let incoming_response: Headers<HostIncomingResponse> = |v, r| wit::HostIncomingResponse::headers(v, r);
    let outgoing_request: Headers<HostOutgoingRequest> = |v, r| wit::HostOutgoingRequest::headers(v, r);
    let outgoing_response: Headers<HostOutgoingResponse> = |v, r| wit::HostOutgoingResponse::headers(v, r);
    headers_as_children(&mut types, "incoming-request", incoming_request)?;
    headers_as_children(&mut types, "incoming-response", incoming_response)?;
    headers_as_children(&mut types, "outgoing-request", outgoing_request)?;
    headers_as_children(&mut types, "outgoing-response", outgoing_response)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn headers_as_children<P: 'static>(
    types: &mut LinkerInstance<'_, State>,
    resource: &str,
    headers: Headers<P>,
) -> wasmtime::Result<()> {
    types.func_wrap(
        &format!("[method]{resource}.headers"),
        move |mut store: StoreContextMut<'_, State>, (parent,): (Resource<P>,)| {
            let fields = headers(&mut store.data_mut().http(), Resource::new_borrow(parent.rep()))?;
            Ok((adopt(&mut store.data_mut().table, fields, &parent)?,))
        },
    )
}

/// Moves `fields` (a top-level entry) under `parent` in the table.
fn adopt<P: 'static>(
    table: &mut ResourceTable,
    fields: Resource<FieldMap>,
    parent: &Resource<P>,
) -> wasmtime::Result<Resource<FieldMap>> {
    let fields = table.delete(fields)?;
    Ok(table.push_child(fields, parent)?)
}
