/* Chat templates: every conversation of tests/data/chat/chat_golden.json (rendered by the real
 * Jinja templates with jinja2, tests/ref/make_chat_golden.py) rendered in C and compared byte for
 * byte, the errors where the real template raises, recognition by exact template text, and the
 * error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "models/chat_template.h"

#define CHAT_DIR SPIN_TEST_DATA "/chat"

static json_object *golden;

static json_object *get(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v)) {
        fail_msg("fixture: missing key \"%s\"", key);
    }
    return v;
}

static const char *str(json_object *o, const char *key) {
    return json_object_get_string(get(o, key));
}

static json_object *conversation(const char *name) {
    json_object *convs = get(golden, "conversations");
    for (size_t i = 0; i < json_object_array_length(convs); i++) {
        json_object *c = json_object_array_get_idx(convs, i);
        if (strcmp(str(c, "name"), name) == 0)
            return get(c, "messages");
    }
    fail_msg("fixture: no conversation \"%s\"", name);
    return NULL;
}

static void check_template(const char *name, spin_chat_template want) {
    spin_chat_template t;
    assert_int_equal(spin_chat_template_from_name(name, &t), SPIN_OK);
    assert_int_equal(t, want);
    assert_string_equal(spin_chat_template_name(t), name);
    json_object *entry = get(get(golden, "templates"), name);
    json_object *jinja = NULL;
    if (json_object_object_get_ex(entry, "jinja", &jinja)) {
        /* the C recognition key is the same text the golden strings were rendered from */
        assert_non_null(spin_chat_template_jinja(t));
        assert_string_equal(spin_chat_template_jinja(t), json_object_get_string(jinja));
        spin_chat_template r;
        assert_int_equal(spin_chat_template_from_jinja(json_object_get_string(jinja), &r), SPIN_OK);
        assert_int_equal(r, t);
    } else {
        assert_null(spin_chat_template_jinja(t));
    }
    json_object *cases = get(entry, "cases");
    int n_cases = (int)json_object_array_length(cases), exact = 0, errors = 0;
    for (int i = 0; i < n_cases; i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        const char *conv = str(c, "conversation");
        json_object *msgs = conversation(conv);
        int n = (int)json_object_array_length(msgs);
        spin_chat_message m[16];
        assert_true(n <= 16);
        for (int k = 0; k < n; k++) {
            json_object *mk = json_object_array_get_idx(msgs, k);
            m[k].role = str(mk, "role");
            m[k].content = str(mk, "content");
        }
        bool gen = json_object_get_boolean(get(c, "add_generation_prompt"));
        char *out = (char *)"sentinel";
        spin_status s = spin_chat_render(t, m, n, gen, str(c, "bos_token"), str(c, "eos_token"), &out);
        json_object *expected = NULL;
        if (json_object_object_get_ex(c, "expected", &expected)) {
            if (s != SPIN_OK)
                fail_msg("%s / %s (gen %d): error %s", name, conv, gen, spin_last_error());
            if (strcmp(out, json_object_get_string(expected)) != 0)
                fail_msg("%s / %s (gen %d, bos %s):\n got  [%s]\n want [%s]", name, conv, gen,
                         str(c, "bos_token"), out, json_object_get_string(expected));
            free(out);
            exact++;
        } else {
            if (s == SPIN_OK)
                fail_msg("%s / %s (gen %d): rendered [%s], want error \"%s\"", name, conv, gen, out,
                         str(c, "error"));
            assert_int_equal(s, SPIN_ERR_INVALID);
            assert_null(out);
            const char *msg = spin_last_error();
            assert_non_null(strstr(msg, name)); /* the message names the template */
            if (strcmp(str(c, "error_kind"), "raise_exception") == 0 && !strstr(msg, str(c, "error")))
                fail_msg("%s / %s: message \"%s\" lacks the template's \"%s\"", name, conv, msg,
                         str(c, "error"));
            errors++;
        }
    }
    print_message("%-12s %3d cases: %3d strings equal to jinja2's, %3d errors as expected\n", name, n_cases,
                  exact, errors);
    assert_true(exact > 0);
}

static void test_golden_zephyr(void **state) {
    (void)state;
    check_template("zephyr", SPIN_CHAT_ZEPHYR);
}
static void test_golden_chatml(void **state) {
    (void)state;
    check_template("chatml", SPIN_CHAT_CHATML);
}
static void test_golden_llama2(void **state) {
    (void)state;
    check_template("llama-2", SPIN_CHAT_LLAMA2);
}
static void test_golden_mistral(void **state) {
    (void)state;
    check_template("mistral", SPIN_CHAT_MISTRAL);
}
static void test_golden_instruction(void **state) {
    (void)state;
    check_template("instruction", SPIN_CHAT_INSTRUCTION);
}

/* spin-reference §6 and §2.5.3: the SPIN prompt with an empty system message. */
static void test_zephyr_reference_example(void **state) {
    (void)state;
    spin_chat_message m[] = {{"system", ""}, {"user", "Hi?"}};
    char *out = NULL;
    assert_int_equal(spin_chat_render(SPIN_CHAT_ZEPHYR, m, 2, true, "<s>", "</s>", &out), SPIN_OK);
    assert_string_equal(out, "<|system|>\n</s>\n<|user|>\nHi?</s>\n<|assistant|>\n");
    free(out);
    spin_chat_message real[] = {{"assistant", "Y"}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_ZEPHYR, real, 1, false, "<s>", "</s>", &out), SPIN_OK);
    assert_string_equal(out, "<|assistant|>\nY</s>\n"); /* SPIN strips the leading "<|assistant|>\n" */
    free(out);
    spin_chat_message p[] = {{"user", "Name a colour."}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_INSTRUCTION, p, 1, true, NULL, NULL, &out), SPIN_OK);
    assert_string_equal(out, "### Instruction: Name a colour.\n\n### Response: ");
    free(out);
}

static void test_errors(void **state) {
    (void)state;
    spin_chat_template t;
    assert_int_equal(spin_chat_template_from_name("vicuna", &t), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "vicuna"));
    assert_non_null(strstr(spin_last_error(), "zephyr, chatml, llama-2, mistral, instruction"));

    char *out = (char *)"x";
    spin_chat_message tool[] = {{"user", "a"}, {"tool", "b"}};
    for (int k = 0; k < SPIN_CHAT_N_TEMPLATES; k++) {
        assert_int_equal(spin_chat_render((spin_chat_template)k, tool, 2, true, "<s>", "</s>", &out),
                         SPIN_ERR_INVALID);
        assert_null(out);
        assert_non_null(strstr(spin_last_error(), "\"tool\""));
        assert_non_null(strstr(spin_last_error(), "message 1"));
        assert_non_null(strstr(spin_last_error(), spin_chat_template_name((spin_chat_template)k)));
    }
    spin_chat_message bad_utf8[] = {{"user", "caf\xc3"}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_CHATML, bad_utf8, 1, true, NULL, NULL, &out),
                     SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "UTF-8"));
    spin_chat_message surrogate[] = {{"user", "\xed\xa0\x80"}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_ZEPHYR, surrogate, 1, true, NULL, "</s>", &out),
                     SPIN_ERR_INVALID);
    spin_chat_message null_content[] = {{"user", NULL}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_ZEPHYR, null_content, 1, true, NULL, "</s>", &out),
                     SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "content"));

    /* special tokens the template uses must be given */
    spin_chat_message u[] = {{"user", "a"}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_ZEPHYR, u, 1, true, NULL, NULL, &out), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "eos_token"));
    assert_int_equal(spin_chat_render(SPIN_CHAT_LLAMA2, u, 1, true, NULL, "</s>", &out), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "bos_token"));
    assert_int_equal(spin_chat_render(SPIN_CHAT_CHATML, u, 1, true, NULL, NULL, &out), SPIN_OK);
    free(out);

    /* system messages the template cannot place */
    spin_chat_message sys_first[] = {{"system", "s"}, {"user", "a"}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_MISTRAL, sys_first, 2, true, "<s>", "</s>", &out),
                     SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "role system"));
    assert_int_equal(spin_chat_render(SPIN_CHAT_INSTRUCTION, sys_first, 2, true, NULL, NULL, &out),
                     SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "role system"));
    spin_chat_message late_sys[] = {{"user", "a"}, {"system", "s"}};
    assert_int_equal(spin_chat_render(SPIN_CHAT_LLAMA2, late_sys, 2, true, "<s>", "</s>", &out),
                     SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "message 1 has role system"));
    assert_int_equal(spin_chat_render(SPIN_CHAT_LLAMA2, u, -1, true, "<s>", "</s>", &out), SPIN_ERR_INVALID);
}

static void test_recognition(void **state) {
    (void)state;
    static const struct {
        const char *file, *bos, *eos;
        spin_chat_template want;
    } ok[] = {
        {"tokenizer_config_zephyr.json", "<s>", "</s>", SPIN_CHAT_ZEPHYR},
        {"tokenizer_config_chatml.json", "<|im_start|>", "<|im_end|>", SPIN_CHAT_CHATML},
        {"tokenizer_config_llama2.json", "<s>", "</s>", SPIN_CHAT_LLAMA2}, /* AddedToken objects */
        {"tokenizer_config_mistral.json", "<s>", "</s>", SPIN_CHAT_MISTRAL},
        {"tokenizer_config_named_list.json", "<s>", "</s>", SPIN_CHAT_MISTRAL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char path[512], *bos = NULL, *eos = NULL;
        snprintf(path, sizeof path, "%s/%s", CHAT_DIR, ok[i].file);
        spin_chat_template t;
        spin_status s = spin_chat_template_from_tokenizer_config(path, &t, &bos, &eos);
        if (s != SPIN_OK)
            fail_msg("%s: %s", ok[i].file, spin_last_error());
        assert_int_equal(t, ok[i].want);
        assert_string_equal(bos, ok[i].bos);
        assert_string_equal(eos, ok[i].eos);
        free(bos);
        free(eos);
    }
    char path[512], *bos = (char *)"x", *eos = (char *)"x";
    spin_chat_template t;
    snprintf(path, sizeof path, "%s/tokenizer_config_near_miss.json", CHAT_DIR);
    assert_int_equal(spin_chat_template_from_tokenizer_config(path, &t, &bos, &eos), SPIN_ERR_INVALID);
    assert_null(bos);
    assert_null(eos);
    assert_non_null(strstr(spin_last_error(), "pass a template name"));
    assert_non_null(strstr(spin_last_error(), "closest: chatml"));
    snprintf(path, sizeof path, "%s/tokenizer_config_no_template.json", CHAT_DIR);
    assert_int_equal(spin_chat_template_from_tokenizer_config(path, &t, NULL, NULL), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "no chat_template"));
    snprintf(path, sizeof path, "%s/does_not_exist.json", CHAT_DIR);
    assert_int_equal(spin_chat_template_from_tokenizer_config(path, &t, NULL, NULL), SPIN_ERR_IO);

    /* exact match only: whitespace or a one-character change is not recognised */
    const char *src = spin_chat_template_jinja(SPIN_CHAT_ZEPHYR);
    size_t len = strlen(src);
    char *copy = malloc(len + 2);
    memcpy(copy, src, len + 1);
    copy[len - 1] = ' ';
    assert_int_equal(spin_chat_template_from_jinja(copy, &t), SPIN_ERR_INVALID);
    memcpy(copy, src, len);
    copy[len] = '\n';
    copy[len + 1] = '\0';
    assert_int_equal(spin_chat_template_from_jinja(copy, &t), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "closest: zephyr"));
    free(copy);
    assert_int_equal(spin_chat_template_from_jinja("{{ messages }}", &t), SPIN_ERR_INVALID);
}

int main(void) {
    golden = json_object_from_file(CHAT_DIR "/chat_golden.json");
    if (!golden) {
        fprintf(stderr, "cannot read %s/chat_golden.json\n", CHAT_DIR);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_zephyr),
        cmocka_unit_test(test_golden_chatml),
        cmocka_unit_test(test_golden_llama2),
        cmocka_unit_test(test_golden_mistral),
        cmocka_unit_test(test_golden_instruction),
        cmocka_unit_test(test_zephyr_reference_example),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_recognition),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_object_put(golden);
    return rc;
}
