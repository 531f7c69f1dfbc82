/* Accuracy of the vectorizable exp and erf used by softmax, SiLU and GELU, against libm in
 * double precision over a dense grid. */
#include <math.h>
#include <stdio.h>

#include "embed/vit_math.h"
#include "tests/check.h"

int main(void)
{
    double worst_exp = 0.0, worst_erf = 0.0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000000.0f;
        double e = exp((double)x);
        double rel = fabs(vit_expf(x) - e) / e;
        worst_exp = rel > worst_exp ? rel : worst_exp;
    }
    for (int i = 0; i <= 2000000; i++) {
        float x = -8.0f + 16.0f * (float)i / 2000000.0f;
        double d = fabs(vit_erff(x) - erf((double)x));
        worst_erf = d > worst_erf ? d : worst_erf;
    }
    printf("vit_expf max relative error %.2e on [-87, 88]\n", worst_exp);
    printf("vit_erff max absolute error %.2e on [-8, 8]\n", worst_erf);
    CHECK_MSG(worst_exp < 2e-7, "vit_expf relative error %.3e", worst_exp);
    CHECK_MSG(worst_erf < 5e-7, "vit_erff absolute error %.3e", worst_erf);
    CHECK(vit_expf(-1000.0f) >= 0.0f && vit_expf(-1000.0f) < 1e-37f);
    CHECK(isfinite(vit_expf(1000.0f)));
    CHECK(isnan(vit_expf(NAN)) && isfinite(vit_expf(INFINITY)) && vit_expf(-INFINITY) >= 0.0f);
    CHECK(vit_erff(0.0f) == 0.0f);
    CHECK(vit_erff(-100.0f) == -vit_erff(100.0f));
    return check_finish();
}
