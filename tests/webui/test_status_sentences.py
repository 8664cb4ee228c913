"""The web page's own sentences (issue 26, point 3): a command-line error is said for the page:
one error, no server folders, no "run the command again", commands as the server owner's to run,
and hints that look like hints, not errors."""

from __future__ import annotations

from generator.webui.status import error_html, for_the_page, hint_html

OFFLINE = ("vqgan_imagenet_f16_16384 (file vqgan_imagenet_f16_16384.ckpt, 980.1 MB) is not in /srv/weights and "
           "offline mode forbids downloading it; run `python -m generator download vqgan_imagenet_f16_16384` while "
           "online, or save it as /srv/weights/vqgan_imagenet_f16_16384.ckpt.")


def test_a_command_line_sentence_is_said_for_the_page() -> None:
    said = for_the_page(OFFLINE)
    assert "/srv" not in said and "save it as vqgan_imagenet_f16_16384.ckpt." in said
    assert "is not in the server's folder" in said
    assert "ask whoever runs this server to run `python -m generator download vqgan_imagenet_f16_16384`" in said
    assert said.startswith("vqgan_imagenet_f16_16384 ")  # a name keeps its case
    assert for_the_page("could not reach it; check the connection and run the command again.") == \
        "Could not reach it; check the connection and try again."
    assert for_the_page("Run the command again to resume.") == "Try again to resume."
    assert for_the_page("init image /home/me/pic.png does not exist; check the path.\nerror: a second one") == \
        "Init image pic.png does not exist; check the path."  # one error at a time
    assert for_the_page("the prompt is empty; give some text.") == "The prompt is empty; give some text."


def test_errors_and_hints_look_different_and_neither_says_error_colon() -> None:
    error, hint = error_html("the prompt is empty."), hint_html(OFFLINE)
    assert 'class="status-error" role="alert"' in error and "error:" not in error
    assert 'class="status-hint"' in hint and "role=" not in hint and "error" not in hint


def test_a_command_already_given_as_a_way_is_left_as_it_reads() -> None:
    said = for_the_page("vqgan_gumbel_f8 is not in /srv/w and --offline is set; download it with "
                        "`python -m generator download vqgan_gumbel_f8` on a machine with internet.")
    assert "download it with `python -m generator download vqgan_gumbel_f8` on a machine" in said
    assert "ask whoever" not in said
