//! The significance test of the research tools: the two-sided Mann-Whitney U
//! test (Wilcoxon rank-sum). Boot times on a shared machine are skewed and
//! often bimodal, so a rank test suits them better than a t-test. Exact
//! p-values for small samples without ties; otherwise the normal approximation
//! with the tie correction and a continuity correction (statrs' normal CDF).

use statrs::distribution::{ContinuousCDF, Normal};

/// Samples up to this many in total get the exact distribution of U.
const EXACT_LIMIT: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MannWhitney {
    /// U of the first sample (how often one of its values beats one of the
    /// second's, ties counting one half).
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
    pub exact: bool,
}

/// Ranks 1..=n of `values` (ties share their mean rank), and Σ(t³ − t) over
/// the groups of ties.
fn ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut rank = vec![0.0; values.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            rank[k] = mean;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (rank, ties)
}

/// Number of arrangements of `n1` and `n2` values (no ties) giving each U,
/// for U = 0..=n1·n2.
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // f(a, b, u) = f(a − 1, b, u − b) + f(a, b − 1, u): the largest value
    // comes from the first sample (and beats all b of the second) or not.
    let max = n1 * n2;
    // The distributions for (a, b − 1), a = 0..=n1; with b = 0, U is 0.
    let mut base = vec![0.0; max + 1];
    base[0] = 1.0;
    let mut prev = vec![base; n1 + 1];
    for b in 1..=n2 {
        let mut cur: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n1 + 1];
        cur[0][0] = 1.0;
        for a in 1..=n1 {
            for u in 0..=max {
                let mut v = prev[a][u];
                if u >= b {
                    v += cur[a - 1][u - b];
                }
                cur[a][u] = v;
            }
        }
        prev = cur;
    }
    prev.swap_remove(n1)
}

/// The two-sided Mann-Whitney U test of `a` against `b`. None when either is
/// empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let (rank, ties) = ranks(&all);
    let r1: f64 = rank[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let mean = n1f * n2f / 2.0;
    if ties == 0.0 && n1 + n2 <= EXACT_LIMIT {
        let dist = u_distribution(n1, n2);
        let total: f64 = dist.iter().sum();
        // P(U ≤ min(u, n1·n2 − u)), doubled (U is symmetric)
        let small = u1.min(n1f * n2f - u1).round() as usize;
        let tail: f64 = dist[..=small].iter().sum::<f64>() / total;
        return Some(MannWhitney {
            u: u1,
            p: (2.0 * tail).min(1.0),
            exact: true,
        });
    }
    let n = n1f + n2f;
    let var = n1f * n2f / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        // every value equal: no evidence of a difference
        return Some(MannWhitney {
            u: u1,
            p: 1.0,
            exact: false,
        });
    }
    let z = ((u1 - mean).abs() - 0.5).max(0.0) / var.sqrt();
    let normal = Normal::standard();
    Some(MannWhitney {
        u: u1,
        p: (2.0 * (1.0 - normal.cdf(z))).min(1.0),
        exact: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_p_values_match_the_tables() {
        // Completely separated samples of 5 and 5: U = 0, p = 2/252.
        let r = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!(r.exact);
        assert_eq!(r.u, 0.0);
        assert!((r.p - 2.0 / 252.0).abs() < 1e-12, "{}", r.p);
        // and the other way round: U = 25, the same p
        let r = mann_whitney(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(r.u, 25.0);
        assert!((r.p - 2.0 / 252.0).abs() < 1e-12);
        // 3 against 3, separated: 2/20
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((r.p - 0.1).abs() < 1e-12);
        // interleaved samples: no evidence at all
        let r = mann_whitney(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]).unwrap();
        assert_eq!(r.u, 8.0);
        assert!((r.p - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_distribution_counts_every_arrangement() {
        // C(n1 + n2, n1) arrangements in all, symmetric around n1·n2/2
        let d = u_distribution(4, 6);
        assert_eq!(d.iter().sum::<f64>(), 210.0);
        assert_eq!(d.len(), 25);
        for u in 0..=24 {
            assert_eq!(d[u], d[24 - u]);
        }
        assert_eq!(u_distribution(1, 1), [1.0, 1.0]);
    }

    #[test]
    fn large_or_tied_samples_use_the_normal_approximation() {
        let a: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| 104.0 + (i % 7) as f64).collect();
        let r = mann_whitney(&a, &b).unwrap();
        assert!(!r.exact);
        assert!(r.p < 0.001, "{}", r.p);
        let r = mann_whitney(&a, &a).unwrap();
        assert!(r.p > 0.9, "{}", r.p);
        // all equal: p = 1, not NaN
        let r = mann_whitney(&[5.0, 5.0], &[5.0, 5.0, 5.0]).unwrap();
        assert_eq!(r.p, 1.0);
        assert!(mann_whitney(&[], &[1.0]).is_none());
        assert!(mann_whitney(&[1.0], &[]).is_none());
    }
}
