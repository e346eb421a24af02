//! The fee assessor: answers fee-assessment-requested events with fee-assessed events, per
//! line the base amount, the waiver applied with its legal basis, and the amount due.
//!
//! It evaluates the same rules with the same code as the issuer
//! ([`feepay_domain::waiver::RuleSet::assess_line`]), so a portal that charges what the
//! assessor answered is never rejected for an amount mismatch.

pub mod app;

use chrono::{DateTime, Utc};
use feepay_domain::money::Vnd;
use feepay_domain::waiver::LineQuery;
use feepay_proto::v1;
use feepay_runtime::convert::{assessed_line_pb, ts, AssessmentRequest};
use feepay_runtime::refdata::LoadedReference;

/// Assesses a request. Unknown agency or fee codes give an answer with `error` set, so the
/// portal learns why instead of waiting.
pub fn assess(loaded: &LoadedReference, req: &AssessmentRequest, now: DateTime<Utc>) -> v1::FeeAssessed {
    let at = req.at.unwrap_or(now);
    let mut answer = v1::FeeAssessed {
        assessment_id: req.assessment_id.clone(),
        agency_code: req.agency_code.clone(),
        procedure_code: req.procedure_code.clone(),
        lines: Vec::new(),
        total_due: String::new(),
        assessed_at: Some(ts(at)),
        error: String::new(),
    };
    if !loaded.reference.agencies.contains_key(&req.agency_code) {
        answer.error = format!("agency {} is not in the reference data", req.agency_code);
        return answer;
    }
    let mut total = Vnd::ZERO;
    for (i, (code, quantity)) in req.lines.iter().enumerate() {
        let Some(fee) = loaded.reference.fees.get(code) else {
            answer.error = format!("lines[{i}]: fee {code} is not in the fee schedule");
            answer.lines.clear();
            return answer;
        };
        let q = LineQuery {
            agency: &req.agency_code,
            procedure: &req.procedure_code,
            fee,
            quantity: *quantity,
            channel: req.channel,
            paid_online: req.paid_online,
            categories: &req.categories,
            identity_level: req.identity_level,
            citizen: !req.foreign_payer,
            at,
        };
        match loaded.rules.assess_line(&loaded.reference, &q) {
            Ok(l) => {
                total = total + l.due;
                answer.lines.push(assessed_line_pb(&l));
            }
            Err(e) => {
                answer.error = format!("lines[{i}]: {e}");
                answer.lines.clear();
                return answer;
            }
        }
    }
    answer.total_due = total.to_string();
    answer
}
