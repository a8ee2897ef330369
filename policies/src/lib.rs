//! barelb's CEL policy engine (LoadBalancerPolicy rules): compile, type-check
//! and bounded evaluation, with no Kubernetes client. The engine itself lands
//! with the policy issue; the operator's allocator reaches it through a seam.
