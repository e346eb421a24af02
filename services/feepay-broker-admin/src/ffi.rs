//! librdkafka's ACL operations (`rd_kafka_CreateAcls`, `rd_kafka_DeleteAcls`), which
//! rust-rdkafka does not wrap, behind two safe functions. Every object librdkafka allocates
//! here is owned by a guard that frees it once, on every path; the calls block on a queue
//! of their own, so callers run them on a blocking thread.
#![allow(unsafe_code)]

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

/// One ACL binding or filter, as librdkafka takes it.
pub(crate) struct Acl {
    pub restype: rd::rd_kafka_ResourceType_t,
    pub name: CString,
    pub pattern: rd::rd_kafka_ResourcePatternType_t,
    pub principal: Option<CString>,
    pub operation: rd::rd_kafka_AclOperation_t,
    pub permission: rd::rd_kafka_AclPermissionType_t,
}

/// Owns a `rd_kafka_AclBinding_t` (a filter has the same type).
struct Binding(*mut rd::rd_kafka_AclBinding_t);

impl Drop for Binding {
    fn drop(&mut self) {
        // SAFETY: the pointer came from rd_kafka_AclBinding(Filter)_new, is not null (checked
        // at construction) and is freed only here. librdkafka copies bindings into its
        // request, so freeing them after the call is allowed.
        unsafe { rd::rd_kafka_AclBinding_destroy(self.0) }
    }
}

struct Queue(*mut rd::rd_kafka_queue_t);
impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new, not null, freed once.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

struct Options(*mut rd::rd_kafka_AdminOptions_t);
impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new, not null, freed once.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

struct Event(*mut rd::rd_kafka_event_t);
impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: returned (not null) by rd_kafka_queue_poll; the results read from it are
        // not used after this.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long as the object
    // they belong to, which outlives this copy.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

const ANY_HOST: &CStr = c"*";

fn binding(acl: &Acl, filter: bool) -> Result<Binding, String> {
    let mut err = [0 as c_char; 512];
    let principal = acl.principal.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: every pointer is valid for the call (CStrings owned by `acl`, a constant, a
    // local buffer with its true length); librdkafka copies the strings.
    let p = unsafe {
        if filter {
            rd::rd_kafka_AclBindingFilter_new(
                acl.restype,
                acl.name.as_ptr(),
                acl.pattern,
                principal,
                std::ptr::null(),
                acl.operation,
                acl.permission,
                err.as_mut_ptr(),
                err.len(),
            )
        } else {
            rd::rd_kafka_AclBinding_new(
                acl.restype,
                acl.name.as_ptr(),
                acl.pattern,
                principal,
                ANY_HOST.as_ptr(),
                acl.operation,
                acl.permission,
                err.as_mut_ptr(),
                err.len(),
            )
        }
    };
    if p.is_null() {
        return Err(text(err.as_ptr()));
    }
    Ok(Binding(p))
}

/// Runs one admin operation on a queue of its own and returns its result event.
fn call<C: ClientContext>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    start: impl FnOnce(*mut rd::rd_kafka_t, *const rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Event, String> {
    let rk = client.native_ptr();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is the live handle of `client`, borrowed for the whole function.
    let queue = Queue(unsafe { rd::rd_kafka_queue_new(rk) });
    // SAFETY: as above; the operation code is one of librdkafka's.
    let options = Options(unsafe { rd::rd_kafka_AdminOptions_new(rk, op) });
    if queue.0.is_null() || options.0.is_null() {
        return Err("librdkafka could not allocate an admin request".into());
    }
    let mut err = [0 as c_char; 512];
    // SAFETY: valid options and a local buffer with its true length.
    let code = unsafe { rd::rd_kafka_AdminOptions_set_request_timeout(options.0, ms, err.as_mut_ptr(), err.len()) };
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(text(err.as_ptr()));
    }
    start(rk, options.0, queue.0);
    // SAFETY: the queue is valid; the result arrives on it (or nothing within the timeout).
    let ev = unsafe { rd::rd_kafka_queue_poll(queue.0, ms.saturating_add(1000)) };
    if ev.is_null() {
        return Err(format!("no answer from the broker within {timeout:?}"));
    }
    let ev = Event(ev);
    // SAFETY: a valid event.
    let code = unsafe { rd::rd_kafka_event_error(ev.0) };
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: a valid event; the string lives as long as it.
        return Err(text(unsafe { rd::rd_kafka_event_error_string(ev.0) }));
    }
    Ok(ev)
}

/// Creates the ACLs; returns, per ACL, the broker's refusal if it refused it.
pub(crate) fn create_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[Acl],
    timeout: Duration,
) -> Result<Vec<Option<String>>, String> {
    let bindings = acls.iter().map(|a| binding(a, false)).collect::<Result<Vec<_>, _>>()?;
    let mut raw: Vec<*mut rd::rd_kafka_AclBinding_t> = bindings.iter().map(|b| b.0).collect();
    let ev = call(client, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS, timeout, |rk, opts, q| {
        // SAFETY: `raw` holds `raw.len()` valid bindings that outlive the call (librdkafka
        // copies them); options and queue are valid.
        unsafe { rd::rd_kafka_CreateAcls(rk, raw.as_mut_ptr(), raw.len(), opts, q) }
    })?;
    // SAFETY: the event of a CreateAcls request.
    let result = unsafe { rd::rd_kafka_event_CreateAcls_result(ev.0) };
    if result.is_null() {
        return Err("the broker's answer was not a CreateAcls result".into());
    }
    let mut n = 0usize;
    // SAFETY: a valid result; the array has `n` entries and lives as long as the event.
    let results = unsafe { rd::rd_kafka_CreateAcls_result_acls(result, &mut n) };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i < n, entries are valid while the event lives.
        let e = unsafe { rd::rd_kafka_acl_result_error(*results.add(i)) };
        out.push(if e.is_null() {
            None
        } else {
            // SAFETY: a valid error object owned by the result.
            Some(text(unsafe { rd::rd_kafka_error_string(e) }))
        });
    }
    Ok(out)
}

/// Deletes every ACL matching one of the filters; returns how many were deleted.
pub(crate) fn delete_acls<C: ClientContext>(
    client: &Client<C>,
    filters: &[Acl],
    timeout: Duration,
) -> Result<usize, String> {
    let bindings = filters.iter().map(|a| binding(a, true)).collect::<Result<Vec<_>, _>>()?;
    let mut raw: Vec<*mut rd::rd_kafka_AclBindingFilter_t> = bindings.iter().map(|b| b.0).collect();
    let ev = call(client, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS, timeout, |rk, opts, q| {
        // SAFETY: as for CreateAcls.
        unsafe { rd::rd_kafka_DeleteAcls(rk, raw.as_mut_ptr(), raw.len(), opts, q) }
    })?;
    // SAFETY: the event of a DeleteAcls request.
    let result = unsafe { rd::rd_kafka_event_DeleteAcls_result(ev.0) };
    if result.is_null() {
        return Err("the broker's answer was not a DeleteAcls result".into());
    }
    let mut n = 0usize;
    // SAFETY: a valid result; `n` responses that live as long as the event.
    let responses = unsafe { rd::rd_kafka_DeleteAcls_result_responses(result, &mut n) };
    let mut deleted = 0;
    for i in 0..n {
        // SAFETY: i < n.
        let r = unsafe { *responses.add(i) };
        // SAFETY: a valid response.
        let e = unsafe { rd::rd_kafka_DeleteAcls_result_response_error(r) };
        if !e.is_null() {
            // SAFETY: a valid error object owned by the response.
            return Err(text(unsafe { rd::rd_kafka_error_string(e) }));
        }
        let mut m = 0usize;
        // SAFETY: a valid response; only the count is read.
        unsafe { rd::rd_kafka_DeleteAcls_result_response_matching_acls(r, &mut m) };
        deleted += m;
    }
    Ok(deleted)
}

/// How many ACLs the broker that answers holds matching the filter. The broker answers
/// from the same authorizer state it checks requests against.
pub(crate) fn count_acls<C: ClientContext>(
    client: &Client<C>,
    filter: &Acl,
    timeout: Duration,
) -> Result<usize, String> {
    let binding = binding(filter, true)?;
    let ev = call(client, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS, timeout, |rk, opts, q| {
        // SAFETY: a valid filter that outlives the call (librdkafka copies it); options and
        // queue are valid.
        unsafe { rd::rd_kafka_DescribeAcls(rk, binding.0, opts, q) }
    })?;
    // SAFETY: the event of a DescribeAcls request.
    let result = unsafe { rd::rd_kafka_event_DescribeAcls_result(ev.0) };
    if result.is_null() {
        return Err("the broker's answer was not a DescribeAcls result".into());
    }
    let mut n = 0usize;
    // SAFETY: a valid result; only the count is read.
    unsafe { rd::rd_kafka_DescribeAcls_result_acls(result, &mut n) };
    Ok(n)
}
