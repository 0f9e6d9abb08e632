//! Renyi-DP accountant (work in progress).
