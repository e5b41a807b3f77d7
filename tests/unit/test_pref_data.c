/* Preference data: the four fixture files tests/data/train/collate_*.jsonl (SPIN, DPO strings, DPO
 * message lists, SPPO) read with the zephyr template must give exactly the templated strings that
 * tests/ref/make_collate_golden.py rendered with jinja2 (cross-checked there against transformers'
 * apply_chat_template), and every malformed input must fail with "<file>:<line>: <what>". */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "train/pref_data.h"

#define TRAIN_DATA SPIN_TEST_DATA "/train"

static json_object *golden;
static char tmpdir[256];

static json_object *get(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("fixture: missing key \"%s\"", key);
    return v;
}

static int setup(void **state) {
    (void)state;
    golden = json_object_from_file(TRAIN_DATA "/collate_golden.json");
    if (!golden) {
        print_error("cannot read %s: %s\n", TRAIN_DATA "/collate_golden.json", json_util_get_last_err());
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/spin_test_pref_data_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    json_object_put(golden);
    rmdir(tmpdir); /* each test removes its own files */
    return 0;
}

static spin_data_kind kind_of(const char *name) {
    if (!strcmp(name, "spin"))
        return SPIN_DATA_SPIN;
    if (!strcmp(name, "dpo"))
        return SPIN_DATA_DPO;
    assert_string_equal(name, "sppo");
    return SPIN_DATA_SPPO;
}

/* A golden probability: null -> NAN; else the JSON double rounded to float, which is how the
 * reader stores it (so equality is exact). */
static void check_prob(json_object *want, float got) {
    if (!want) {
        assert_true(isnan(got));
        return;
    }
    assert_true(got == (float)json_object_get_double(want));
}

static void check_file(json_object *entry, spin_chat_template tmpl) {
    char path[512];
    snprintf(path, sizeof path, TRAIN_DATA "/%s", json_object_get_string(get(entry, "file")));
    spin_pref_data d;
    spin_status s = spin_pref_data_read(path, tmpl, "<s>", "</s>", &d);
    if (s != SPIN_OK)
        fail_msg("%s", spin_last_error());
    json_object *exs = get(entry, "examples");
    assert_int_equal(d.kind, kind_of(json_object_get_string(get(entry, "kind"))));
    assert_int_equal(d.n, (int64_t)json_object_array_length(exs));
    for (int64_t i = 0; i < d.n; i++) {
        json_object *e = json_object_array_get_idx(exs, (size_t)i);
        assert_string_equal(d.ex[i].prompt, json_object_get_string(get(e, "prompt")));
        assert_string_equal(d.ex[i].chosen, json_object_get_string(get(e, "chosen")));
        assert_string_equal(d.ex[i].rejected, json_object_get_string(get(e, "rejected")));
        check_prob(get(e, "probs_chosen"), d.ex[i].probs_chosen);
        check_prob(get(e, "probs_win"), d.ex[i].probs_win);
        check_prob(get(e, "probs_lose"), d.ex[i].probs_lose);
    }
    spin_pref_data_free(&d);
    assert_int_equal(d.n, 0);
    assert_null(d.ex);
}

static void test_golden_files(void **state) {
    (void)state;
    json_object *files = get(golden, "files");
    assert_int_equal(json_object_array_length(files), 4);
    for (size_t i = 0; i < json_object_array_length(files); i++)
        check_file(json_object_array_get_idx(files, i), SPIN_CHAT_ZEPHYR);
}

static void test_kind_names(void **state) {
    (void)state;
    assert_string_equal(spin_data_kind_name(SPIN_DATA_SPIN), "spin");
    assert_string_equal(spin_data_kind_name(SPIN_DATA_DPO), "dpo");
    assert_string_equal(spin_data_kind_name(SPIN_DATA_SPPO), "sppo");
}

/* DPO string rows never touch the template: any template gives the same texts. */
static void test_string_rows_ignore_the_template(void **state) {
    (void)state;
    json_object *files = get(golden, "files");
    for (size_t i = 0; i < json_object_array_length(files); i++) {
        json_object *f = json_object_array_get_idx(files, i);
        if (!strcmp(json_object_get_string(get(f, "file")), "collate_dpo_str.jsonl"))
            check_file(f, SPIN_CHAT_CHATML);
    }
}

/* ---- errors -------------------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

/* Writes `text` to a temp file, reads it with `tmpl`, and expects SPIN_ERR_INVALID with the message
 * "<file>:" + want. */
static void expect_error_tmpl(const char *text, spin_chat_template tmpl, const char *want) {
    char path[512], msg[2048];
    snprintf(path, sizeof path, "%s/bad.jsonl", tmpdir);
    write_file(path, text);
    spin_pref_data d = {.n = 99};
    spin_status s = spin_pref_data_read(path, tmpl, "<s>", "</s>", &d);
    snprintf(msg, sizeof msg, "%s:%s", path, want);
    if (s != SPIN_ERR_INVALID || strcmp(spin_last_error(), msg) != 0)
        fail_msg("input %s\n  status %s\n  got:  %s\n  want: %s", text, spin_status_name(s),
                 spin_last_error(), msg);
    assert_int_equal(d.n, 0);
    assert_null(d.ex);
    unlink(path);
}

static void expect_error(const char *text, const char *want) {
    expect_error_tmpl(text, SPIN_CHAT_ZEPHYR, want);
}

#define U(c) "{\"role\":\"user\",\"content\":\"" c "\"}"
#define A(c) "{\"role\":\"assistant\",\"content\":\"" c "\"}"
#define S(c) "{\"role\":\"system\",\"content\":\"" c "\"}"
#define SPIN_OK_ROW "{\"real\":[" U("q") "," A("r") "],\"generated\":[" U("q") "," A("g") "]}\n"
#define DPO_STR_ROW "{\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\"}\n"

static void test_errors_json(void **state) {
    (void)state;
    expect_error("", "1: empty file (no JSON rows; 0 blank line(s))");
    expect_error("\n  \n\t\n", "1: empty file (no JSON rows; 3 blank line(s))");
    expect_error("{\"real\": [\n", "1: not valid JSON (unexpected end of data at column 12)");
    expect_error(DPO_STR_ROW "\n{\"prompt\":\"p\"} x\n",
                 "3: not valid JSON (unexpected character at column 16)");
    expect_error("{\"prompt\":\"\xff\",\"chosen\":\"c\",\"rejected\":\"r\"}\n",
                 "1: not valid JSON (invalid utf-8 string at column 12)");
    expect_error("[1, 2]\n", "1: the row is not a JSON object (got array)");
    expect_error("{\"foo\": 1}\n",
                 "1: no known columns: expected \"real\" and \"generated\" (SPIN), or \"chosen\" and "
                 "\"rejected\" (DPO; SPPO adds chosen_probs, chosen_probs_win, chosen_probs_lose)");
}

static void test_errors_spin_rows(void **state) {
    (void)state;
    expect_error("{\"real\":[" U("q") "," A("r") "]}", "1: missing key \"generated\"");
    expect_error("{\"real\":\"hi\",\"generated\":[]}", "1: real is not a list of messages (got string)");
    expect_error("{\"real\":[\"hi\"],\"generated\":[]}", "1: real[0] is not a message object (got string)");
    expect_error("{\"real\":[{\"content\":\"x\"}],\"generated\":[]}", "1: real[0] has no \"role\"");
    expect_error("{\"real\":[{\"role\":\"user\"}],\"generated\":[]}", "1: real[0] has no \"content\"");
    expect_error("{\"real\":[{\"role\":5,\"content\":\"x\"}],\"generated\":[]}",
                 "1: real[0].role is not a string (got int)");
    expect_error("{\"real\":[{\"role\":\"user\",\"content\":null}],\"generated\":[]}",
                 "1: real[0].content is not a string (got null)");
    expect_error(SPIN_OK_ROW "{\"real\":[" U("q") ",{\"role\":\"bot\",\"content\":\"x\"}],\"generated\":[" U(
                     "q") "," A("g") "]}\n",
                 "2: real[1].role \"bot\" is not system, user or assistant");
    expect_error("{\"real\":[" U("q") "," A("a\\u0000b") "],\"generated\":[" U("q") "," A("g") "]}",
                 "1: real[1].content contains a NUL character");
    expect_error("{\"real\":[" U("q") "],\"generated\":[" U("q") "," A("g") "]}",
                 "1: real has 1 message(s); SPIN needs the prompt turn and at least one response message");
    expect_error(
        "{\"real\":[" U("q") "," A("r") "],\"generated\":[" U("q") "]}",
        "1: generated has 1 message(s); SPIN needs the prompt turn and at least one response message");
    expect_error("{\"real\":[" S("s") "," A("r") "],\"generated\":[" U("q") "," A("g") "]}",
                 "1: real has no user message (SPIN's prompt is the first user message of real)");
    /* a template that does not render a lone response as header + text */
    expect_error_tmpl(
        SPIN_OK_ROW, SPIN_CHAT_CHATML,
        "1: real[1:]: the chatml template does not render a response as its generation prompt "
        "followed by the text, so the response cannot be cut out as SPIN does (use zephyr, or DPO "
        "rows of plain strings)");
}

static void test_errors_kinds(void **state) {
    (void)state;
    expect_error(SPIN_OK_ROW "\n" DPO_STR_ROW,
                 "3: mixed kinds: this row is dpo data but the first row (line 1) is "
                 "spin data");
    expect_error("\n" DPO_STR_ROW
                 "{\"chosen\":[" U("q") "," A("c") "],\"rejected\":[" U("q") "," A("r") "]}\n",
                 "3: mixed forms: chosen is a list of messages here but a string in the first row (line 2)");
    expect_error(DPO_STR_ROW "{\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\",\"chosen_probs\":0.5}\n",
                 "2: mixed kinds: this row is sppo data but the first row (line 1) is dpo data");
    expect_error("{\"chosen\":5,\"rejected\":\"r\"}",
                 "1: chosen is neither a string nor a list of messages (got int)");
    expect_error("{\"rejected\":\"r\"}", "1: missing key \"chosen\"");
}

static void test_errors_dpo_rows(void **state) {
    (void)state;
    expect_error("{\"chosen\":\"c\",\"rejected\":\"r\"}", "1: missing key \"prompt\"");
    expect_error("{\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":[]}",
                 "1: rejected (a string row: chosen is a string) is not a string (got array)");
    expect_error("{\"chosen\":[" U("q") "," A("c") "],\"rejected\":\"r\"}",
                 "1: rejected is not a list of messages (got string)");
    expect_error("{\"prompt\":7,\"chosen\":[" U("q") "," A("c") "],\"rejected\":[" U("q") "," A("r") "]}",
                 "1: prompt is neither a list of messages nor a string (got int)");
    expect_error("{\"chosen\":[" A("c") "],\"rejected\":[" U("q") "," A("r") "]}",
                 "1: chosen has 1 message(s); without a prompt list it needs the prompt turns and the final "
                 "assistant response");
    expect_error("{\"chosen\":[" U("q") "," A("c") "],\"rejected\":[" A("r") "," U("q") "]}",
                 "1: rejected[1] (the last message) is a user message, not the assistant response");
    expect_error(
        "{\"chosen\":[" U("q") "," A("c") "],\"rejected\":[" U("q") "," A("x") "," U("y") "," A("r") "]}",
        "1: rejected has 4 messages but chosen has 2 (rejected[:-1] must equal chosen[:-1], the prompt "
        "turns)");
    expect_error("{\"chosen\":[" U("q") "," A("c") "],\"rejected\":[" U("Q") "," A("r") "]}",
                 "1: rejected[0] differs from chosen[0] (the prompt turns must be the same)");
    expect_error("{\"prompt\":[],\"chosen\":[" A("c") "],\"rejected\":[" A("r") "]}",
                 "1: prompt is an empty message list");
    expect_error("{\"prompt\":[" U("q") "],\"chosen\":[" A("c") "],\"rejected\":[]}",
                 "1: rejected is an empty message list");
    expect_error(
        "{\"prompt\":[" U("q") "],\"chosen\":[" U("c") "],\"rejected\":[" A("r") "]}",
        "1: chosen[0] is a user message; with a prompt list the response must start with an assistant "
        "message");
}

static void test_errors_sppo_rows(void **state) {
    (void)state;
#define SPPO_HEAD "{\"chosen\":[" U("q") "," A("c") "],\"rejected\":[" U("q") "," A("r") "],"
    expect_error(SPPO_HEAD "\"chosen_probs\":\"0.5\",\"chosen_probs_win\":0.5,\"chosen_probs_lose\":0.5}",
                 "1: chosen_probs is not a number (got string)");
    expect_error(SPPO_HEAD "\"chosen_probs\":0.5,\"chosen_probs_win\":1.5,\"chosen_probs_lose\":0.5}",
                 "1: chosen_probs_win is 1.5, not a probability in [0, 1]");
    expect_error(SPPO_HEAD "\"chosen_probs\":0.5,\"chosen_probs_win\":0.5,\"chosen_probs_lose\":NaN}",
                 "1: chosen_probs_lose is nan, not a probability in [0, 1]");
    expect_error(SPPO_HEAD "\"chosen_probs\":0.5,\"chosen_probs_win\":0.5}",
                 "1: missing key \"chosen_probs_lose\"");
#undef SPPO_HEAD
}

static void test_io_error(void **state) {
    (void)state;
    char path[512], want[600];
    snprintf(path, sizeof path, "%s/absent.jsonl", tmpdir);
    spin_pref_data d;
    assert_int_equal(spin_pref_data_read(path, SPIN_CHAT_ZEPHYR, "<s>", "</s>", &d), SPIN_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot open the preference data (No such file or directory)", path);
    assert_string_equal(spin_last_error(), want);
    assert_null(d.ex);
    assert_int_equal(spin_pref_data_read(NULL, SPIN_CHAT_ZEPHYR, "<s>", "</s>", &d), SPIN_ERR_INVALID);
    assert_int_equal(spin_pref_data_read(path, SPIN_CHAT_ZEPHYR, "<s>", "</s>", NULL), SPIN_ERR_INVALID);
    spin_pref_data_free(NULL);
}

/* CRLF line ends and blank lines are accepted; the row after them keeps its own line number. */
static void test_crlf_and_blank_lines(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/crlf.jsonl", tmpdir);
    write_file(path,
               "\r\n" DPO_STR_ROW "\r\n \r\n{\"prompt\":\"P\",\"chosen\":\"C\",\"rejected\":\"R\"}\r\n");
    spin_pref_data d;
    assert_int_equal(spin_pref_data_read(path, SPIN_CHAT_ZEPHYR, "<s>", "</s>", &d), SPIN_OK);
    assert_int_equal(d.kind, SPIN_DATA_DPO);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.ex[1].prompt, "P");
    assert_string_equal(d.ex[1].chosen, "C");
    assert_string_equal(d.ex[1].rejected, "R");
    assert_true(isnan(d.ex[1].probs_chosen));
    spin_pref_data_free(&d);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_files),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_string_rows_ignore_the_template),
        cmocka_unit_test(test_errors_json),
        cmocka_unit_test(test_errors_spin_rows),
        cmocka_unit_test(test_errors_kinds),
        cmocka_unit_test(test_errors_dpo_rows),
        cmocka_unit_test(test_errors_sppo_rows),
        cmocka_unit_test(test_io_error),
        cmocka_unit_test(test_crlf_and_blank_lines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
